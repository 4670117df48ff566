// The shopper view: what Aisle believes about the current shopper (profile) and their
// recommendations, refreshed after every event sent from here, with new entries marked.

import { api } from "../api.js";
import { count, h, leaf, price, replaceChildren, score } from "../dom.js";
import { card, scaleOf } from "../cards.js";
import { onActivity, recentActivity, requester, sendEvent, shopper } from "../state.js";
import { recommendationsPath } from "./search.js";

const EVENT_LABELS = { view: "viewed", click: "clicked", add_to_cart: "added to cart", purchase: "bought" };
const COUNT_LABELS = { view: "views", click: "clicks", add_to_cart: "carts", purchase: "purchases" };
let lastShown = { who: null, ids: [] };
let rerender = null;

onActivity(() => {
  if (rerender) rerender();
});

export async function renderShopper(root, context) {
  const draw = async () => {
    const who = requester();
    const name = shopper() || "anonymous visitor";
    const [recommendations, profile] = await Promise.all([
      api(recommendationsPath(who), { query: { k: 12, session_id: who.session_id, explain: "true" } }),
      api(`/users/${encodeURIComponent(who.user_id || who.session_id)}/profile`, { query: { session_id: who.session_id } }).catch((error) => ({ error })),
    ]);
    context.noteResponse(recommendations);
    const key = `${who.user_id || ""}|${who.session_id}`;
    const previous = lastShown.who === key ? new Set(lastShown.ids) : null;
    const ids = recommendations.results.map((result) => result.id);
    const fresh = previous ? ids.filter((id) => !previous.has(id)) : [];
    lastShown = { who: key, ids };
    const scale = scaleOf(recommendations.results);
    const actionsFor = (result, position) =>
      h(
        "div",
        { class: "card-actions" },
        [
          ["view", "View"],
          ["add_to_cart", "Cart"],
          ["purchase", "Buy"],
        ].map(([type, label]) =>
          h(
            "button",
            {
              type: "button",
              class: `small-button ${type}`,
              title: `Send a ${type} event for ${name}`,
              onclick: (event) => {
                event.currentTarget.disabled = true;
                sendEvent(type, result, context.features, { request_id: recommendations.request_id, position }).catch((error) =>
                  context.status(`Event not recorded: ${error.message}`, true),
                );
              },
            },
            label,
          ),
        ),
      );
    replaceChildren(
      root,
      h(
        "div",
        { class: "shopper-layout" },
        h("aside", { class: "profile", id: "profile" }, profilePanel(name, profile)),
        h(
          "section",
          {},
          h(
            "div",
            { class: "results-head" },
            h("div", {}, h("h1", {}, `Recommended for ${name}`), h("p", { class: "muted small" }, `${recommendations.took_ms} ms · index ${recommendations.index_version}${recommendations.variant ? ` · variant ${recommendations.variant}` : ""}`)),
          ),
          fresh.length
            ? h("p", { class: "notice ok", id: "changes" }, `${fresh.length} new recommendation${fresh.length > 1 ? "s" : ""} since the last event.`)
            : h("p", { class: "muted small", id: "changes" }, "Send events with the buttons on a card (or from a product page): the list and the profile update."),
          h(
            "div",
            { class: "grid", id: "recommendations" },
            recommendations.results.map((result, index) =>
              card(result, { scale, badge: result.source, fresh: fresh.includes(result.id), actions: actionsFor(result, index + 1) }),
            ),
          ),
          activityLog(),
        ),
      ),
    );
  };
  rerender = () => {
    if (root.isConnected && document.body.dataset.view === "shopper") draw().catch((error) => context.status(error.message, true));
  };
  await draw();
}

function bars(entries, label) {
  const widest = Math.max(...entries.map((entry) => entry.weight || 0), 1e-9);
  return h(
    "ul",
    { class: "weights" },
    entries.map((entry) =>
      h(
        "li",
        {},
        h("span", { class: "weight-label", title: label(entry) }, label(entry)),
        h("span", { class: "weight-bar" }, h("i", { style: { width: `${((entry.weight || 0) / widest) * 100}%` } })),
        h("span", { class: "count" }, score(entry.weight, 2)),
      ),
    ),
  );
}

function named(list) {
  // Affinities come as [{name, weight}] or [[name, weight]] or plain names.
  return (list || []).map((entry) => {
    if (Array.isArray(entry)) return { name: entry[0], weight: entry[1] };
    if (typeof entry === "string") return { name: entry, weight: 1 };
    return { name: entry.name ?? entry.value ?? entry.category ?? entry.brand, weight: entry.weight ?? entry.score ?? 1 };
  });
}

function profilePanel(name, profile) {
  if (profile.error) {
    const needsKey = profile.error.status === 401;
    return [
      h("h2", {}, name),
      h("p", { class: `notice ${needsKey ? "" : "error"}` }, needsKey ? "The profile needs the API key: set it with the Key button at the top." : profile.error.message),
    ];
  }
  const events = profile.events || {};
  return [
    h("h2", {}, name),
    profile.known
      ? h("p", { class: "muted small" }, `${count(events.total)} events · evidence ${score(profile.evidence, 2)}`)
      : h("p", { class: "muted small" }, "No events yet: recommendations are the popular list."),
    h(
      "div",
      { class: "event-counts" },
      Object.entries(COUNT_LABELS).map(([type, label]) => h("div", { class: "stat" }, h("b", {}, count(events[type] || 0)), h("span", {}, label))),
    ),
    profile.price_band ? h("p", {}, "Usual price band ", h("b", {}, `${price(profile.price_band.min)} – ${price(profile.price_band.max)}`)) : null,
    named(profile.top_categories).length ? [h("h3", {}, "Categories"), bars(named(profile.top_categories), (entry) => leaf(entry.name) || entry.name)] : null,
    named(profile.top_brands).length ? [h("h3", {}, "Brands"), bars(named(profile.top_brands), (entry) => entry.name)] : null,
    (profile.top_items || []).length
      ? [h("h3", {}, "Items shaping the profile"), bars(profile.top_items, (entry) => entry.title || entry.id)]
      : null,
  ];
}

function activityLog() {
  const entries = recentActivity();
  if (!entries.length) return null;
  return h(
    "section",
    { class: "activity" },
    h("h3", {}, "Events sent from this tab"),
    h(
      "ol",
      {},
      entries.map((entry) =>
        h("li", {}, h("b", {}, entry.shopper), ` ${EVENT_LABELS[entry.type] || entry.type} `, h("i", {}, entry.item.title || entry.item.id), h("span", { class: "muted small" }, ` · ${entry.at.toLocaleTimeString()}`)),
      ),
    ),
  );
}
