// The search page: box, filters and facets, sort, pages and result cards with drawn scores.

import { api } from "../api.js";
import { count, h, replaceChildren } from "../dom.js";
import { card, legend, scaleOf } from "../cards.js";
import { href, params, requester, update } from "../state.js";

const PAGE_SIZE = 12;
// Without `offset` pages are read as the first page × size results (the API's k is at most 100).
const MAX_K = 100;
const FIXED_FILTERS = ["category", "brand", "price_min", "price_max", "in_stock"];

function attributeFilters(state) {
  const found = {};
  for (const [name, value] of state.entries()) {
    if (name.startsWith("f.")) (found[name.slice(2)] ||= []).push(value);
  }
  return found;
}

function numberParam(state, name) {
  const value = state.get(name);
  return value === null || value === "" || Number.isNaN(Number(value)) ? undefined : Number(value);
}

export function searchRequest(state, features, summary) {
  const page = Math.max(1, Number(state.get("page")) || 1);
  const filters = {};
  if (state.get("category")) filters.category = state.get("category");
  const brands = state.getAll("brand");
  if (brands.length) filters.brand = brands.length === 1 ? brands[0] : brands;
  const priceMin = numberParam(state, "price_min");
  const priceMax = numberParam(state, "price_max");
  if (priceMin !== undefined) filters.price_min = priceMin;
  if (priceMax !== undefined) filters.price_max = priceMax;
  if (state.get("in_stock") === "1") filters.in_stock = true;
  if (features.anyFilter) {
    for (const [name, values] of Object.entries(attributeFilters(state))) filters[name] = values.length === 1 ? values[0] : values;
  }
  const body = { query: state.get("q") || "", explain: true, ...requester() };
  if (Object.keys(filters).length) body.filters = filters;
  if (features.offset) {
    body.k = PAGE_SIZE;
    body.offset = (page - 1) * PAGE_SIZE;
  } else {
    body.k = Math.min(MAX_K, page * PAGE_SIZE);
  }
  if (features.sort && state.get("sort")) body.sort = state.get("sort");
  if (features.facets) body.facets = facetFields(summary);
  return { body, page };
}

export function facetFields(summary) {
  const attributes = Object.entries(summary?.attributes || {})
    .filter(([, role]) => role.facetable)
    .map(([name]) => name);
  return ["category", "brand", ...attributes];
}

function pageCount(response, features, page, shown) {
  if (typeof response.total === "number") {
    const limit = features.offset ? 1000 : MAX_K;
    return Math.max(1, Math.ceil(Math.min(response.total, limit) / PAGE_SIZE));
  }
  // No total: another page exists while the last request came back full.
  const full = features.offset ? shown === PAGE_SIZE : response.results.length === Math.min(MAX_K, page * PAGE_SIZE);
  const capped = !features.offset && page * PAGE_SIZE >= MAX_K;
  return full && !capped ? page + 1 : page;
}

export async function renderSearch(root, context) {
  const { features } = context;
  const state = params();
  const query = state.get("q") || "";
  const summary = await context.summary();
  const { body, page } = searchRequest(state, features, summary);
  const hasFilters = Boolean(body.filters);
  if (!query && (!features.browse || (!hasFilters && !state.get("sort")))) {
    return renderLanding(root, context, summary);
  }
  context.status(`Searching for “${query}”…`);
  let response = takeFirstResponse(body);
  try {
    response ||= await api("/search", { method: "POST", body });
  } catch (error) {
    if (body.facets && error.status === 422) {
      // A field the service will not facet: ask again for brand and category only.
      body.facets = ["category", "brand"];
      response = await api("/search", { method: "POST", body });
    } else {
      throw error;
    }
  }
  context.status("");
  context.noteResponse(response);
  const results = features.offset ? response.results : response.results.slice((page - 1) * PAGE_SIZE);
  const scale = scaleOf(results);
  const pages = pageCount(response, features, page, results.length);
  const totalText =
    typeof response.total === "number"
      ? `${count(response.total)} results`
      : `${count((page - 1) * PAGE_SIZE + results.length)}${pages > page ? "+" : ""} results`;
  replaceChildren(
    root,
    h(
      "div",
      { class: "search-layout" },
      h("aside", { class: "filters", "aria-label": "Filters" }, filterPanel(state, features, summary, response)),
      h(
        "section",
        { class: "results-area" },
        h(
          "div",
          { class: "results-head" },
          h(
            "div",
            {},
            h("h1", {}, query ? ["Results for ", h("q", {}, query)] : "All products"),
            h(
              "p",
              { class: "muted small" },
              `${totalText} · ${response.took_ms} ms · index ${response.index_version}`,
              response.experiment ? ` · experiment ${response.experiment}: ${response.variant}` : "",
            ),
          ),
          features.sort ? sortSelect(state, summary) : null,
        ),
        activeFilters(state),
        legend(),
        results.length
          ? h("div", { class: "grid", id: "results" }, results.map((result) => card(result, { scale })))
          : h("p", { class: "notice", id: "results" }, hasFilters ? "No product matches these filters." : `No results for “${query}”.`),
        pager(page, pages),
      ),
    ),
  );
}

// The server ran this link's first search to put its results in the HTML; when it asked exactly
// what this page would ask (bar the tab's session id), its answer is used: one search, not two.
function takeFirstResponse(body) {
  const element = document.getElementById("first-response");
  if (!element) return null;
  element.remove();
  let embedded;
  try {
    embedded = JSON.parse(element.textContent);
  } catch {
    return null;
  }
  const { session_id: _session, ...asked } = body;
  return canonical(asked) === canonical(embedded.request) ? embedded.response : null;
}

function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.keys(value).sort().map((key) => `${JSON.stringify(key)}:${canonical(value[key])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

function sortSelect(state, summary) {
  const options = [
    ["", "Relevance"],
    ["price:asc", "Price: low to high"],
    ["price:desc", "Price: high to low"],
  ];
  for (const [name, role] of Object.entries(summary?.attributes || {})) {
    if (role.sortable) options.push([`${name}:desc`, `${name}: high to low`], [`${name}:asc`, `${name}: low to high`]);
  }
  const select = h(
    "select",
    { id: "sort", "aria-label": "Sort by", onchange: (event) => update({ sort: event.target.value || null, page: null }) },
    options.map(([value, label]) => h("option", { value, selected: (state.get("sort") || "") === value }, label)),
  );
  return h("label", { class: "sort" }, "Sort ", select);
}

function activeFilters(state) {
  const chips = [];
  const remove = (name, value) => {
    const values = state.getAll(name).filter((item) => item !== value);
    update({ [name]: values.length ? values : null, page: null });
  };
  for (const [name, value] of state.entries()) {
    if (!FIXED_FILTERS.includes(name) && !name.startsWith("f.")) continue;
    const label = name === "in_stock" ? "In stock" : `${name.replace(/^f\./, "").replace("_", " ")}: ${value}`;
    chips.push(h("button", { class: "chip active", type: "button", title: "Remove filter", onclick: () => remove(name, value) }, label, " ×"));
  }
  if (!chips.length) return null;
  return h("div", { class: "active-filters" }, chips, h("a", { href: href({ q: state.get("q") }), "data-nav": true, class: "small" }, "Clear all"));
}

function facetCounts(response, field) {
  const counts = response.facets?.[field];
  if (!counts) return null;
  return Object.entries(counts).map(([name, value]) => ({ name, count: value }));
}

function categoryLevel(categories, selected) {
  // The children of the selected path (or the departments), with counts summed over subtrees.
  const prefix = selected ? selected.split(">").map((part) => part.trim()) : [];
  const counts = new Map();
  for (const { name, count: value } of categories) {
    const parts = name.split(">").map((part) => part.trim());
    const matches = prefix.every((part, index) => (parts[index] || "").toLowerCase() === part.toLowerCase());
    if (!matches || parts.length <= prefix.length) continue;
    const child = parts.slice(0, prefix.length + 1).join(" > ");
    counts.set(child, (counts.get(child) || 0) + value);
  }
  return [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([name, value]) => ({ name, count: value }));
}

function filterPanel(state, features, summary, response) {
  const fromFacets = Boolean(response.facets);
  const scope = fromFacets ? "matching this search" : "in the whole catalogue";
  const categories = facetCounts(response, "category") || summary?.categories || [];
  const brands = facetCounts(response, "brand") || summary?.brands || [];
  const selectedCategory = state.get("category") || "";
  const sections = [];

  const level = categoryLevel(categories, selectedCategory);
  const trail = selectedCategory
    ? h(
        "div",
        { class: "trail" },
        h("button", { type: "button", class: "link", onclick: () => update({ category: null, page: null }) }, "All categories"),
        selectedCategory.split(">").map((part, index, parts) => [
          h("span", { class: "muted" }, " › "),
          h(
            "button",
            {
              type: "button",
              class: "link",
              onclick: () => update({ category: parts.slice(0, index + 1).map((p) => p.trim()).join(" > "), page: null }),
            },
            part.trim(),
          ),
        ]),
      )
    : null;
  sections.push(
    facetSection("Category", "category", trail, level.slice(0, 20), (entry) => update({ category: entry.name, page: null }), (entry) =>
      entry.name.split(">").pop().trim(),
    ),
  );
  const chosenBrands = state.getAll("brand");
  sections.push(
    facetSection(
      "Brand",
      "brand",
      null,
      brands.slice(0, 15),
      (entry) => {
        const next = chosenBrands.includes(entry.name) ? chosenBrands.filter((b) => b !== entry.name) : [...chosenBrands, entry.name];
        update({ brand: next.length ? next : null, page: null });
      },
      (entry) => entry.name,
      (entry) => chosenBrands.includes(entry.name),
    ),
  );
  if (features.anyFilter && response.facets) {
    for (const [field, counts] of Object.entries(response.facets)) {
      if (field === "category" || field === "brand") continue;
      const chosen = state.getAll(`f.${field}`);
      const entries = Object.entries(counts).map(([name, value]) => ({ name, count: value }));
      sections.push(
        facetSection(
          field,
          `f-${field}`,
          null,
          entries.slice(0, 15),
          (entry) => {
            const next = chosen.includes(entry.name) ? chosen.filter((v) => v !== entry.name) : [...chosen, entry.name];
            update({ [`f.${field}`]: next.length ? next : null, page: null });
          },
          (entry) => entry.name,
          (entry) => chosen.includes(entry.name),
        ),
      );
    }
  }
  sections.push(priceSection(state));
  sections.push(
    h(
      "section",
      { class: "facet" },
      h(
        "label",
        { class: "check" },
        h("input", {
          type: "checkbox",
          id: "in-stock",
          checked: state.get("in_stock") === "1",
          onchange: (event) => update({ in_stock: event.target.checked ? "1" : null, page: null }),
        }),
        "In stock only",
      ),
    ),
  );
  return [h("p", { class: "muted small scope" }, `Counts ${scope}`), sections];
}

function facetSection(title, id, header, entries, choose, label, isChosen = () => false) {
  return h(
    "section",
    { class: "facet", id: `facet-${id}` },
    h("h3", {}, title),
    header,
    entries.length
      ? h(
          "ul",
          {},
          entries.map((entry) =>
            h(
              "li",
              {},
              h(
                "button",
                { type: "button", class: `facet-value${isChosen(entry) ? " chosen" : ""}`, onclick: () => choose(entry), "aria-pressed": isChosen(entry) },
                h("span", {}, label(entry)),
                h("span", { class: "count" }, count(entry.count)),
              ),
            ),
          ),
        )
      : h("p", { class: "muted small" }, "—"),
  );
}

function priceSection(state) {
  const min = h("input", { type: "number", min: "0", step: "any", placeholder: "min", value: state.get("price_min") || "", "aria-label": "Lowest price" });
  const max = h("input", { type: "number", min: "0", step: "any", placeholder: "max", value: state.get("price_max") || "", "aria-label": "Highest price" });
  const apply = (event) => {
    event.preventDefault();
    update({ price_min: min.value || null, price_max: max.value || null, page: null });
  };
  return h("section", { class: "facet" }, h("h3", {}, "Price"), h("form", { class: "price-range", onsubmit: apply }, min, "–", max, h("button", { type: "submit", class: "ghost" }, "Go")));
}

function pager(page, pages) {
  if (pages <= 1) return null;
  const link = (number, label = String(number)) =>
    number === page
      ? h("span", { class: "page current", "aria-current": "page" }, label)
      : h("button", { type: "button", class: "page", onclick: () => update({ page: number === 1 ? null : String(number) }) }, label);
  const numbers = [];
  for (let number = Math.max(1, page - 3); number <= Math.min(pages, page + 3); number += 1) numbers.push(link(number));
  return h(
    "nav",
    { class: "pager", "aria-label": "Pages" },
    page > 1 ? h("button", { type: "button", class: "page", onclick: () => update({ page: page - 1 === 1 ? null : String(page - 1) }) }, "‹ Previous") : null,
    numbers,
    page < pages ? h("button", { type: "button", class: "page next", onclick: () => update({ page: String(page + 1) }) }, "Next ›") : null,
  );
}

// A path id for recommendation routes: the shopper, or this tab's session for a visitor (whose
// events carry only the session id, so the path id itself has no history).
export function recommendationsPath(who) {
  return `/users/${encodeURIComponent(who.user_id || who.session_id)}/recommendations`;
}

async function renderLanding(root, context, summary) {
  const who = requester();
  const recommendations = await api(recommendationsPath(who), { query: { k: 8, session_id: who.session_id, explain: "true" } });
  context.noteResponse(recommendations);
  const departments = categoryLevel(summary?.categories || [], "");
  replaceChildren(
    root,
    h(
      "section",
      { class: "landing" },
      h("h1", {}, "Try a search"),
      h("p", { class: "muted" }, `${count(summary?.items)} products in index ${summary?.index_version}. Type in the box above, or start from a department.`),
      h(
        "div",
        { class: "departments" },
        departments.map((entry) =>
          h("a", { class: "department", href: href(context.features.browse ? { category: entry.name } : { q: entry.name.split(">").pop().trim(), category: entry.name }), "data-nav": true }, entry.name, h("span", { class: "count" }, count(entry.count))),
        ),
      ),
      h("h2", {}, who.user_id ? `Picked for ${who.user_id}` : "Popular now"),
      h(
        "div",
        { class: "grid" },
        recommendations.results.map((result) => card(result, { scale: scaleOf(recommendations.results), badge: result.source })),
      ),
    ),
  );
}
