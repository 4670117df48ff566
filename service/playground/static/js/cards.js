// Product cards and the drawing of a result's score (its `explain` parts and rules).

import { h, hue, leaf, price, score } from "./dom.js";
import { href } from "./state.js";

// Parts of `final = semantic + lexical + personal (+ other) + boosts − penalties − diversity`.
export const PARTS = [
  { key: "semantic", label: "Semantic", sign: 1, help: "meaning match between the query and the product" },
  { key: "lexical", label: "Lexical", sign: 1, help: "word match (BM25)" },
  { key: "personal", label: "Personal", sign: 1, help: "fit with this shopper's profile" },
  { key: "other", label: "Other", sign: 1, help: "relevance not split into parts (e.g. popularity)" },
  { key: "boosts", label: "Boosts", sign: 1, help: "business rules that raised the score" },
  { key: "penalties", label: "Penalties", sign: -1, help: "business rules that lowered the score" },
  { key: "diversity", label: "Diversity", sign: -1, help: "lowered because it resembles an item above" },
];

const RULES = {
  pin: "pinned to this position by a rule",
  exploration: "exploration slot: shown to learn a new taste",
  diversity: "lowered to vary the list",
  price_band: "outside the shopper's usual price band",
  "cap:brand": "moved up: a better match was held back by the brand cap",
  "cap:category": "moved up: a better match was held back by the category cap",
};

export function ruleText(rule) {
  if (RULES[rule]) return RULES[rule];
  if (rule.startsWith("boost:")) return `boost rule “${rule.slice(6)}” changed the score`;
  return rule;
}

export function pictureUrl(item) {
  const image = item.image;
  if (!image) return null;
  if (/^https?:\/\//i.test(image)) return image;
  return `/playground/images/${encodeURIComponent(item.id)}`;
}

export function picture(item, size = "card") {
  const url = pictureUrl(item);
  const label = leaf(item.category) || item.brand || item.title || "";
  const placeholder = h(
    "div",
    { class: `placeholder ${size}`, style: { "--hue": hue(label) }, "aria-hidden": "true" },
    h("span", {}, label.slice(0, 24)),
  );
  if (!url) return placeholder;
  const img = h("img", { src: url, alt: item.title || "", loading: "lazy", class: size });
  img.addEventListener("error", () => img.replaceWith(placeholder), { once: true });
  return img;
}

// The widest positive total among `results`, so that every bar of a list shares one scale.
export function scaleOf(results) {
  let widest = 0;
  for (const result of results) {
    const parts = result.explain || {};
    const positive = PARTS.filter((part) => part.sign > 0).reduce((sum, part) => sum + Math.max(0, parts[part.key] || 0), 0);
    widest = Math.max(widest, positive, result.score || 0);
  }
  return widest || 1;
}

export function scoreBar(explain, scale) {
  const bar = h("div", { class: "bar", role: "img" });
  let at = 0;
  const described = [];
  for (const part of PARTS.filter((p) => p.sign > 0)) {
    const value = Math.max(0, explain[part.key] || 0);
    if (value <= 0) continue;
    bar.append(segment(part, value, at, scale));
    described.push(`${part.label} ${score(value)}`);
    at += value;
  }
  const negative = PARTS.filter((p) => p.sign < 0).reduce((sum, part) => sum + Math.max(0, explain[part.key] || 0), 0);
  let from = Math.max(0, at - negative);
  for (const part of PARTS.filter((p) => p.sign < 0)) {
    const value = Math.max(0, explain[part.key] || 0);
    if (value <= 0) continue;
    bar.append(segment(part, value, from, scale, true));
    described.push(`− ${part.label} ${score(value)}`);
    from += value;
  }
  if (typeof explain.final === "number") {
    bar.append(h("div", { class: "final-mark", style: { left: `${clamp((explain.final / scale) * 100)}%` } }));
  }
  bar.setAttribute("aria-label", `Score ${score(explain.final)} = ${described.join(" + ")}`);
  return bar;
}

function clamp(value) {
  return Math.max(0, Math.min(100, value));
}

function segment(part, value, start, scale, negative = false) {
  return h("div", {
    class: `seg ${part.key}${negative ? " minus" : ""}`,
    title: `${part.label}: ${negative ? "−" : "+"}${score(value)} (${part.help})`,
    style: { left: `${clamp((start / scale) * 100)}%`, width: `${clamp((value / scale) * 100)}%` },
  });
}

function movement(explain) {
  const rank = explain.relevance_rank;
  const position = explain.position;
  if (typeof rank !== "number" || typeof position !== "number" || rank === position) return null;
  const up = rank > position;
  return h(
    "span",
    { class: `move ${up ? "up" : "down"}`, title: `#${rank} by relevance alone, shown at #${position}` },
    `${up ? "▲" : "▼"} ${Math.abs(rank - position)} (relevance #${rank})`,
  );
}

export function explainBlock(result, scale) {
  const explain = result.explain;
  if (!explain) return h("div", { class: "explain" }, h("span", { class: "score" }, `score ${score(result.score)}`));
  const rows = PARTS.filter((part) => typeof explain[part.key] === "number" && (part.key !== "other" || explain.other)).map(
    (part) =>
      h(
        "tr",
        {},
        h("th", {}, h("i", { class: `swatch ${part.key}` }), part.label),
        h("td", {}, `${part.sign < 0 && explain[part.key] ? "−" : ""}${score(explain[part.key])}`),
      ),
  );
  rows.push(h("tr", { class: "total" }, h("th", {}, "Final"), h("td", {}, score(explain.final))));
  const rules = explain.rules || [];
  return h(
    "div",
    { class: "explain" },
    h(
      "div",
      { class: "score-line" },
      h("span", { class: "score", title: "final score" }, score(result.score)),
      movement(explain),
      explain.retrieved_by ? h("span", { class: "muted small" }, `found by ${explain.retrieved_by}`) : null,
    ),
    scoreBar(explain, scale),
    rules.length ? h("div", { class: "rules" }, rules.map((rule) => h("span", { class: "chip rule", title: ruleText(rule) }, rule))) : null,
    h(
      "details",
      { class: "parts" },
      h("summary", {}, "Why here?"),
      h("table", {}, rows),
      rules.length ? h("ul", { class: "rule-notes" }, rules.map((rule) => h("li", {}, h("b", {}, rule), ": ", ruleText(rule)))) : null,
    ),
  );
}

// One result card; `actions` are extra elements (e.g. shopper buttons) under the body.
export function card(result, { scale = 1, badge = null, actions = null, fresh = false } = {}) {
  const link = href({ item: result.id });
  const stock = result.in_stock === false ? h("span", { class: "badge out" }, "Out of stock") : null;
  return h(
    "article",
    { class: `card${fresh ? " fresh" : ""}`, dataset: { id: result.id } },
    h("a", { class: "thumb", href: link, "data-nav": true, tabindex: "-1" }, picture(result)),
    h(
      "div",
      { class: "body" },
      h(
        "div",
        { class: "meta" },
        [result.brand, leaf(result.category)].filter(Boolean).join(" · "),
        badge ? h("span", { class: `badge source-${badge}`, title: "where this recommendation came from" }, badge.replace("_", " ")) : null,
        fresh ? h("span", { class: "badge new" }, "new") : null,
      ),
      h("a", { class: "title", href: link, "data-nav": true }, result.title || result.id),
      h("div", { class: "price-row" }, h("span", { class: "price" }, price(result.price)), stock),
      explainBlock(result, scale),
      actions,
    ),
  );
}

export function legend() {
  return h(
    "div",
    { class: "legend", "aria-label": "Score parts" },
    h("span", { class: "muted" }, "Score ="),
    PARTS.map((part) =>
      h("span", { class: "legend-item", title: part.help }, part.sign < 0 ? "− " : "", h("i", { class: `swatch ${part.key}` }), part.label),
    ),
    h("span", { class: "legend-item" }, h("i", { class: "swatch final" }), "final"),
  );
}
