// Experiments: per-variant counts and rates with their 95 % intervals, drawn as a chart.
// Read from GET /experiments/{name} when the service has it; the reading is tolerant of the
// exact nesting (a rate is any object with a value and an interval).

import { api } from "../api.js";
import { count, h, replaceChildren, score } from "../dom.js";
import { params, update } from "../state.js";

const SEEN_STORAGE = "aisle.experiments";

export function rememberExperiment(name) {
  if (!name) return;
  const seen = new Set(JSON.parse(sessionStorage.getItem(SEEN_STORAGE) || "[]"));
  seen.add(name);
  sessionStorage.setItem(SEEN_STORAGE, JSON.stringify([...seen]));
}

function seenExperiments() {
  return JSON.parse(sessionStorage.getItem(SEEN_STORAGE) || "[]");
}

const VALUE_KEYS = ["value", "rate", "estimate", "mean", "point", "lift"];

// [low, high] of an interval in any of the usual spellings, or null.
function interval(node) {
  for (const key of ["ci", "ci95", "interval", "confidence_interval", "ci_95"]) {
    const value = node[key];
    if (Array.isArray(value) && value.length === 2) return value.map(Number);
    if (value && typeof value === "object" && "low" in value) return [Number(value.low), Number(value.high)];
    if (value && typeof value === "object" && "lower" in value) return [Number(value.lower), Number(value.upper)];
  }
  if ("low" in node && "high" in node) return [Number(node.low), Number(node.high)];
  if ("lower" in node && "upper" in node) return [Number(node.lower), Number(node.upper)];
  return null;
}

// Flattens one variant into numbers and rates ({value, low, high}) keyed by their path.
export function flatten(node, prefix = "", out = { numbers: {}, rates: {} }) {
  for (const [key, value] of Object.entries(node || {})) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (typeof value === "number") {
      if (!prefix) out.numbers[path] = value;
    }
    else if (value && typeof value === "object" && !Array.isArray(value)) {
      const bounds = interval(value);
      const valueKey = VALUE_KEYS.find((name) => typeof value[name] === "number");
      if (bounds && valueKey) {
        const extras = {};
        for (const [extra, number] of Object.entries(value)) {
          if (typeof number === "number" && extra !== valueKey && !["low", "high", "lower", "upper"].includes(extra)) extras[extra] = number;
        }
        out.rates[path] = { value: value[valueKey], low: bounds[0], high: bounds[1], extras };
      } else flatten(value, path, out);
    }
  }
  return out;
}

export function variantsOf(body) {
  const variants = body.variants ?? body.arms ?? [];
  if (Array.isArray(variants)) return variants.map((variant, index) => ({ name: variant.name ?? variant.variant ?? `variant ${index + 1}`, data: variant }));
  return Object.entries(variants).map(([name, data]) => ({ name, data }));
}

export async function renderExperiments(root, context) {
  const { features } = context;
  const name = params().get("name") || "";
  if (!features.experiments) {
    replaceChildren(
      root,
      h("h1", {}, "Experiments"),
      h(
        "p",
        { class: "notice", id: "experiments-missing" },
        "This service has no experiments API yet (no GET /experiments/{name} in its OpenAPI document). Once it has, each experiment's variants, rates and intervals are drawn here.",
      ),
    );
    return;
  }
  let names = seenExperiments();
  if (features.experimentList) {
    try {
      const listed = await api("/experiments");
      const list = Array.isArray(listed) ? listed : listed.experiments || [];
      names = [...new Set([...names, ...list.map((entry) => (typeof entry === "string" ? entry : entry.name))])];
    } catch (error) {
      context.status(error.message, true);
    }
  }
  const input = h("input", { id: "experiment-name", name: "name", value: name, placeholder: "experiment name", list: "experiment-names", required: true });
  const form = h(
    "form",
    { class: "inline-form", onsubmit: (event) => (event.preventDefault(), update({ name: input.value.trim() })) },
    input,
    h("datalist", { id: "experiment-names" }, names.map((known) => h("option", { value: known }))),
    h("button", { type: "submit" }, "Open"),
  );
  const body = h("div", { id: "experiment" });
  replaceChildren(root, h("h1", {}, "Experiments"), form, names.length ? h("p", { class: "muted small" }, `Seen in responses: ${names.join(", ")}`) : null, body);
  if (!name) return;
  let data;
  try {
    data = await api(`/experiments/${encodeURIComponent(name)}`);
  } catch (error) {
    replaceChildren(body, h("p", { class: `notice ${error.status === 401 ? "" : "error"}` }, error.status === 401 ? "The experiments API needs the API key: set it with the Key button." : error.message));
    return;
  }
  rememberExperiment(name);
  replaceChildren(body, experimentReport(name, data));
}

function experimentReport(name, data) {
  const variants = variantsOf(data).map((variant) => ({ ...variant, ...flatten(variant.data) }));
  const numberKeys = [...new Set(variants.flatMap((variant) => Object.keys(variant.numbers)))];
  const rateKeys = [...new Set(variants.flatMap((variant) => Object.keys(variant.rates)))];
  const mismatch = data.sample_ratio && data.sample_ratio.mismatch;
  return h(
    "section",
    { class: "experiment" },
    h(
      "h2",
      {},
      name,
      data.status ? h("span", { class: "badge" }, data.status) : null,
      data.surfaces ? h("span", { class: "muted small" }, ` · ${[].concat(data.surfaces).join(", ")}`) : null,
    ),
    mismatch
      ? h("p", { class: "notice error" }, `Sample ratio mismatch (p = ${formatNumber("p_value", data.sample_ratio.p_value)}): visitors are not split as configured, so the comparison is not trustworthy.`)
      : null,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "data" },
        h("thead", {}, h("tr", {}, h("th", {}, "Variant"), numberKeys.map((key) => h("th", {}, key.replaceAll("_", " "))))),
        h(
          "tbody",
          {},
          variants.map((variant) =>
            h(
              "tr",
              {},
              h("th", {}, variant.name, variant.data.control ? h("span", { class: "badge" }, "control") : null),
              numberKeys.map((key) => h("td", {}, formatNumber(key, variant.numbers[key]))),
            ),
          ),
        ),
      ),
    ),
    rateKeys.map((key) => intervalChart(key, variants)),
  );
}

function formatNumber(key, value) {
  if (typeof value !== "number") return "–";
  if (/p_?value/i.test(key)) return value < 0.001 ? "< 0.001" : value.toFixed(3);
  if (key === "share") return `${Math.round(value * 100)} %`;
  return Number.isInteger(value) ? count(value) : score(value, 2);
}

const METRIC_NAMES = { ctr: "CTR", add_to_cart_rate: "Add-to-cart rate", conversion: "Conversion", revenue_per_visitor: "Revenue per visitor" };

function metricName(key) {
  const name = key.split(".").pop();
  return METRIC_NAMES[name] || name.replaceAll("_", " ");
}

// Lifts are relative changes; shares (CTR, rates, conversion) read best as percentages.
function asPercent(key) {
  return key.startsWith("lift.") || /ctr|rate|conversion/.test(key.split(".").pop());
}

function formatRate(key, value) {
  if (typeof value !== "number") return "–";
  if (!asPercent(key)) return score(value, 2);
  const sign = key.startsWith("lift.") && value > 0 ? "+" : "";
  return `${sign}${(value * 100).toFixed(1)} %`;
}

// One metric: each variant's value as a dot with its interval as a whisker, on a shared axis.
function intervalChart(key, variants) {
  const rows = variants.filter((variant) => variant.rates[key]);
  const low = Math.min(0, ...rows.map((variant) => variant.rates[key].low));
  const high = Math.max(...rows.map((variant) => variant.rates[key].high), 1e-9);
  const span = high - low || 1;
  const x = (value) => `${((value - low) / span) * 100}%`;
  const lift = key.startsWith("lift.");
  const caption = lift ? `Lift in ${metricName(key)} over control` : metricName(key);
  return h(
    "figure",
    { class: "interval-chart", dataset: { metric: key } },
    h("figcaption", {}, caption, h("span", { class: "muted small" }, " · estimate with its 95 % interval")),
    rows.map((variant) => {
      const rate = variant.rates[key];
      return h(
        "div",
        { class: "interval-row" },
        h("span", { class: "interval-label" }, variant.name),
        h(
          "span",
          { class: "interval-track" },
          low < 0 ? h("i", { class: "zero", style: { left: x(0) }, title: "no change" }) : null,
          h("i", { class: "whisker", style: { left: x(rate.low), width: `${((rate.high - rate.low) / span) * 100}%` } }),
          h("b", { class: "dot", style: { left: x(rate.value) }, title: `${formatRate(key, rate.value)} [${formatRate(key, rate.low)}, ${formatRate(key, rate.high)}]` }),
        ),
        h(
          "span",
          { class: "interval-value" },
          `${formatRate(key, rate.value)} [${formatRate(key, rate.low)}, ${formatRate(key, rate.high)}]`,
          Object.entries(rate.extras || {}).map(([extra, number]) => ` · ${extra.replaceAll("_", " ")} ${formatNumber(extra, number)}`),
        ),
      );
    }),
  );
}
