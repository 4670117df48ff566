// Boots the playground: detects the service's features, wires the header (search box with
// typeahead, shopper switcher, API key) and renders the view named by the address bar.

import { api, apiKey, detectFeatures, setApiKey } from "./api.js";
import { debounce, h, price, replaceChildren } from "./dom.js";
import { picture } from "./cards.js";
import { go, href, onNavigate, params, requester, update } from "./state.js";
import { rememberExperiment, renderExperiments } from "./views/experiments.js";
import { renderIndex } from "./views/index.js";
import { renderProduct } from "./views/product.js";
import { renderSearch } from "./views/search.js";
import { renderShopper } from "./views/shopper.js";

const VIEWS = { search: renderSearch, product: renderProduct, shopper: renderShopper, experiments: renderExperiments, index: renderIndex };
const SHOPPERS = ["anna", "ben", "chloe"];
const root = document.getElementById("view");
const statusBar = document.getElementById("status");
let summary = null;
let renderCount = 0;

const context = {
  features: null,
  summary() {
    summary ||= api("/playground/api/catalogue").catch(() => null);
    return summary;
  },
  resetSummary() {
    summary = null;
  },
  status(message, isError = false) {
    statusBar.textContent = message || "";
    statusBar.className = `status${message ? (isError ? " error" : " info") : ""}`;
  },
  noteResponse(response) {
    if (response && response.experiment) rememberExperiment(response.experiment);
  },
};

function viewName(state) {
  if (state.get("item")) return "product";
  return VIEWS[state.get("view")] ? state.get("view") : "search";
}

async function render() {
  const state = params();
  const view = viewName(state);
  const token = ++renderCount;
  document.body.dataset.view = view;
  delete document.body.dataset.ready;
  for (const link of document.querySelectorAll("nav.views a[data-view]")) {
    link.classList.toggle("current", link.dataset.view === view);
    link.href = href({ view: link.dataset.view });
  }
  document.getElementById("q").value = state.get("q") || "";
  syncShopper();
  document.title = state.get("q") ? `${state.get("q")} · Aisle playground` : "Aisle playground";
  const target = h("div", { class: `view view-${view}` });
  try {
    await VIEWS[view](target, context);
    if (token !== renderCount) return;
    replaceChildren(root, target);
    context.status("");
  } catch (error) {
    if (token !== renderCount) return;
    replaceChildren(root, h("p", { class: "notice error", id: "view-error" }, error.message));
    context.status("");
  }
  document.body.dataset.ready = view;
}

function syncShopper() {
  const select = document.getElementById("shopper");
  const current = params().get("user") || "";
  const names = [...new Set([...SHOPPERS, ...(current ? [current] : [])])];
  replaceChildren(
    select,
    h("option", { value: "" }, "Visitor (anonymous)"),
    names.map((name) => h("option", { value: name, selected: name === current }, name)),
    h("option", { value: "__other" }, "Other shopper…"),
  );
  select.value = current;
}

function wireShopper() {
  document.getElementById("shopper").addEventListener("change", (event) => {
    let value = event.target.value;
    if (value === "__other") {
      value = (window.prompt("Shopper id (the shop's user id)") || "").trim();
      if (!value) return syncShopper();
    }
    update({ user: value || null });
  });
}

function wireKey() {
  const button = document.getElementById("key-button");
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input");
  const label = () => {
    button.textContent = apiKey() ? "Key ✓" : "Key";
  };
  label();
  button.addEventListener("click", () => {
    input.value = apiKey();
    dialog.showModal();
  });
  dialog.addEventListener("close", () => {
    if (dialog.returnValue === "save") setApiKey(input.value.trim());
    if (dialog.returnValue === "clear") setApiKey("");
    label();
    render();
  });
}

function wireLinks() {
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a");
    if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || link.target) return;
    const url = new URL(link.href, window.location.href);
    if (url.origin !== window.location.origin || url.pathname !== "/") return;
    event.preventDefault();
    go(url.pathname + url.search);
    window.scrollTo(0, 0);
  });
  window.addEventListener("popstate", render);
}

function wireSearchBox() {
  const form = document.getElementById("searchbox");
  const input = document.getElementById("q");
  const box = document.getElementById("suggestions");
  let options = [];
  let active = -1;
  const hide = () => {
    box.hidden = true;
    options = [];
    active = -1;
  };
  const choose = (option) => {
    hide();
    if (option.item) go(href({ item: option.item.id }));
    else go(href({ q: option.text }));
  };
  const highlight = () => options.forEach((option, index) => option.element.classList.toggle("active", index === active));
  const show = (data, text) => {
    const suggestions = (data.suggestions || []).map((entry) => ({ text: typeof entry === "string" ? entry : entry.text }));
    const products = (data.results || []).slice(0, 4).map((item) => ({ item }));
    options = [...suggestions, ...products];
    if (!options.length) return hide();
    for (const option of options) {
      option.element = option.item
        ? h(
            "button",
            { type: "button", class: "suggestion suggestion-product", role: "option" },
            picture(option.item, "mini"),
            h("span", { class: "suggestion-title" }, option.item.title),
            h("span", { class: "muted small" }, price(option.item.price)),
          )
        : h("button", { type: "button", class: "suggestion", role: "option" }, h("span", { class: "suggestion-title" }, option.text));
      option.element.addEventListener("mousedown", (event) => {
        event.preventDefault();
        choose(option);
      });
    }
    replaceChildren(
      box,
      suggestions.length ? h("div", { class: "suggestion-group" }, options.filter((o) => !o.item).map((o) => o.element)) : null,
      products.length ? h("div", { class: "suggestion-group" }, h("p", { class: "muted small" }, `Products for “${text}”`), options.filter((o) => o.item).map((o) => o.element)) : null,
    );
    active = -1;
    box.hidden = false;
  };
  const suggest = debounce(async (text) => {
    if (!text.trim()) return hide();
    try {
      const data = await api("/suggest", { query: { q: text, k: 6, ...requester() } });
      if (input.value === text && document.activeElement === input) show(data, text);
    } catch {
      hide();
    }
  }, 120);
  input.addEventListener("input", () => {
    if (context.features && context.features.suggest) suggest(input.value);
  });
  input.addEventListener("keydown", (event) => {
    if (box.hidden || !options.length) return;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      active = (active + (event.key === "ArrowDown" ? 1 : options.length - 1)) % options.length;
      highlight();
    } else if (event.key === "Enter" && active >= 0) {
      event.preventDefault();
      choose(options[active]);
    } else if (event.key === "Escape") hide();
  });
  input.addEventListener("blur", () => setTimeout(hide, 100));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    hide();
    const text = input.value.trim();
    if (text) go(href({ q: text }));
  });
}

async function boot() {
  wireLinks();
  wireShopper();
  wireKey();
  wireSearchBox();
  try {
    context.features = await detectFeatures();
  } catch (error) {
    context.status(`Could not read /openapi.json: ${error.message}`, true);
    context.features = { analytics: [] };
  }
  document.body.dataset.features = Object.entries(context.features)
    .filter(([, value]) => value === true)
    .map(([name]) => name)
    .join(" ");
  onNavigate(render);
  await render();
}

boot();
