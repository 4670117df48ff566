// The product page: the product, shopper actions (view, cart, purchase events), similar items
// and items bought together.

import { api } from "../api.js";
import { count, h, price, replaceChildren } from "../dom.js";
import { card, picture, scaleOf } from "../cards.js";
import { href, params, requester, sendEvent, shopper } from "../state.js";

const HIDDEN_FIELDS = new Set(["id", "title", "description", "brand", "category", "price", "in_stock", "image", "score", "explain"]);

export async function renderProduct(root, context) {
  const { features } = context;
  const itemId = params().get("item");
  const who = requester();
  const [detail, similar, together] = await Promise.all([
    api(features.itemRead ? `/items/${encodeURIComponent(itemId)}` : `/playground/api/items/${encodeURIComponent(itemId)}`),
    api(`/items/${encodeURIComponent(itemId)}/similar`, { query: { k: 8, explain: "true", ...who } }),
    api(`/playground/api/items/${encodeURIComponent(itemId)}/bought-together`, { query: { k: 6 } }).catch(() => ({ results: [] })),
  ]);
  context.noteResponse(similar);
  const item = detail.item;
  const actionStatus = h("p", { class: "small muted", id: "action-status", role: "status" }, `Acting as ${shopper() || "an anonymous visitor"}.`);
  const act = async (type, label) => {
    try {
      await sendEvent(type, item, features);
      actionStatus.textContent = `${label} recorded for ${shopper() || "this visitor"}.`;
      actionStatus.className = "small ok";
    } catch (error) {
      actionStatus.textContent = `${label} not recorded: ${error.message}`;
      actionStatus.className = "small error";
    }
  };
  const attributes = Object.entries(item).filter(([name, value]) => !HIDDEN_FIELDS.has(name) && value !== "" && value !== null);
  replaceChildren(
    root,
    h(
      "nav",
      { class: "crumbs small" },
      h("a", { href: href({}), "data-nav": true }, "Catalogue"),
      (item.category || "")
        .split(">")
        .map((part) => part.trim())
        .filter(Boolean)
        .map((part, index, parts) => [" › ", h("a", { href: href({ q: part, category: parts.slice(0, index + 1).join(" > ") }), "data-nav": true }, part)]),
    ),
    h(
      "section",
      { class: "product" },
      h("div", { class: "product-picture" }, picture(item, "large")),
      h(
        "div",
        { class: "product-info" },
        h("p", { class: "meta" }, [item.brand, item.category].filter(Boolean).join(" · ")),
        h("h1", { id: "product-title" }, item.title),
        h(
          "p",
          { class: "price-row big" },
          h("span", { class: "price" }, price(item.price)),
          item.in_stock === false ? h("span", { class: "badge out" }, "Out of stock") : h("span", { class: "badge in" }, "In stock"),
        ),
        item.description ? h("p", { class: "description" }, item.description) : null,
        attributes.length ? h("dl", { class: "attributes" }, attributes.map(([name, value]) => [h("dt", {}, name), h("dd", {}, String(value))])) : null,
        h("p", { class: "muted small" }, `id ${item.id} · index ${detail.index_version}`),
        h(
          "div",
          { class: "actions" },
          h("button", { type: "button", id: "act-view", class: "ghost", onclick: () => act("view", "View") }, "Record a view"),
          h("button", { type: "button", id: "act-cart", onclick: () => act("add_to_cart", "Add to cart") }, "Add to cart"),
          h("button", { type: "button", id: "act-buy", class: "primary", onclick: () => act("purchase", "Purchase") }, "Buy"),
        ),
        actionStatus,
      ),
    ),
    h(
      "section",
      { class: "strip" },
      h("h2", {}, "Similar items", h("span", { class: "muted small" }, ` · ${similar.took_ms} ms`)),
      similar.results.length
        ? h("div", { class: "grid", id: "similar" }, similar.results.map((result) => card(result, { scale: scaleOf(similar.results) })))
        : h("p", { class: "notice" }, "No similar items."),
    ),
    h(
      "section",
      { class: "strip" },
      h("h2", {}, "Bought together"),
      together.results.length
        ? h(
            "div",
            { class: "grid", id: "bought-together" },
            together.results.map((result) => card({ ...result, score: result.weight }, { badge: "bought_together" })),
          )
        : h("p", { class: "notice", id: "bought-together" }, "No shopper has bought or carted this together with another product yet."),
      h("p", { class: "muted small" }, `From ${count(together.results.length)} co-occurring products in shoppers' events (the recommendations' bought-together signal).`),
    ),
  );
}
