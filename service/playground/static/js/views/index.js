// The index and service view: serving version, published versions, reload, and search analytics
// (from /metrics today; from the service's analytics routes when it has them).

import { api } from "../api.js";
import { count, h, replaceChildren } from "../dom.js";
import { href } from "../state.js";

export async function renderIndex(root, context) {
  const health = await api("/health");
  const versions = await api("/playground/api/versions").catch((error) => ({ error }));
  const reloadStatus = h("p", { class: "small", id: "reload-status", role: "status" });
  const reload = async (event) => {
    event.currentTarget.disabled = true;
    reloadStatus.textContent = "Reloading…";
    try {
      const answer = await api("/admin/reload", { method: "POST" });
      reloadStatus.textContent = answer.swapped
        ? `Swapped ${answer.previous_version} → ${answer.index_version} (${count(answer.items)} products).`
        : `Already serving the newest version, ${answer.index_version}.`;
      reloadStatus.className = "small ok";
      context.resetSummary();
      setTimeout(() => renderIndex(root, context), 1200);
    } catch (error) {
      reloadStatus.textContent = error.status === 401 ? "Reload needs the API key: set it with the Key button." : error.message;
      reloadStatus.className = "small error";
      event.target.disabled = false;
    }
  };
  replaceChildren(
    root,
    h("h1", {}, "Index"),
    h(
      "div",
      { class: "stats" },
      stat("Serving", health.index_version || "—", "serving-version"),
      stat("Products", count(health.items)),
      stat("Status", health.status),
      health.refused_version ? stat("Last refused", health.refused_version) : null,
    ),
    h(
      "section",
      { class: "panel" },
      h("h2", {}, "Published versions"),
      versions.error
        ? h("p", { class: "notice" }, versions.error.status === 401 ? "Listing versions needs the API key: set it with the Key button." : versions.error.message)
        : h(
            "table",
            { class: "data", id: "versions" },
            h("thead", {}, h("tr", {}, ["Version", "Created", "Products", "Model", ""].map((title) => h("th", {}, title)))),
            h(
              "tbody",
              {},
              versions.versions.map((version) =>
                h(
                  "tr",
                  { class: version.name === versions.serving ? "serving" : "" },
                  h("td", {}, version.name),
                  h("td", {}, version.created),
                  h("td", {}, count(version.items)),
                  h("td", { class: "small" }, version.model),
                  h("td", {}, [version.name === versions.serving ? h("span", { class: "badge in" }, "serving") : null, version.current && version.name !== versions.serving ? h("span", { class: "badge" }, "published, not loaded") : null]),
                ),
              ),
            ),
          ),
      h("p", {}, h("button", { type: "button", id: "reload", onclick: reload }, "Reload newest version"), " ", h("span", { class: "muted small" }, "POST /admin/reload: validated before it serves; the old version answers meanwhile.")),
      reloadStatus,
    ),
    h("section", { class: "panel" }, h("h2", {}, "Search analytics"), await analytics(context)),
  );
}

function stat(label, value, id) {
  return h("div", { class: "stat", id }, h("span", {}, label), h("b", {}, value));
}

// Prometheus text → {name: [{labels, value}]}.
export function parseMetrics(text) {
  const metrics = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = line.match(/^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/);
    if (!match) continue;
    const labels = {};
    for (const pair of (match[3] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    (metrics[match[1]] ||= []).push({ labels, value: Number(match[4]) });
  }
  return metrics;
}

// A quantile of a cumulative histogram (upper bound of the bucket that reaches it).
function quantile(buckets, q) {
  const total = buckets.at(-1)?.count || 0;
  if (!total) return null;
  const found = buckets.find((bucket) => bucket.count >= q * total);
  return found ? found.le : null;
}

async function analytics(context) {
  const parts = [];
  for (const path of context.features.analytics) {
    try {
      parts.push(h("h3", {}, path), analyticsReport(await api(path)));
    } catch (error) {
      parts.push(h("p", { class: "notice error" }, error.status === 401 ? `${path} needs the API key: set it with the Key button.` : `${path}: ${error.message}`));
    }
  }
  let text;
  try {
    const response = await fetch("/metrics");
    if (!response.ok) throw new Error(`/metrics answered ${response.status}`);
    text = await response.text();
  } catch (error) {
    parts.push(h("p", { class: "notice" }, error.message));
    return parts;
  }
  const metrics = parseMetrics(text);
  const requests = (metrics.aisle_requests_total || []).filter((entry) => entry.labels.route !== "/metrics");
  const routes = {};
  for (const entry of requests) {
    const key = `${entry.labels.method} ${entry.labels.route}`;
    const row = (routes[key] ||= { ok: 0, client: 0, server: 0 });
    const status = Number(entry.labels.status);
    if (status >= 500) row.server += entry.value;
    else if (status >= 400) row.client += entry.value;
    else row.ok += entry.value;
  }
  const latency = (method, route) => {
    const buckets = (metrics.aisle_request_duration_seconds_bucket || [])
      .filter((entry) => entry.labels.method === method && entry.labels.route === route && entry.labels.le !== "+Inf")
      .map((entry) => ({ le: Number(entry.labels.le), count: entry.value }))
      .sort((a, b) => a.le - b.le);
    const p50 = quantile(buckets, 0.5);
    const p95 = quantile(buckets, 0.95);
    return p50 === null ? "–" : `≤ ${(p50 * 1000).toFixed(0)} / ≤ ${(p95 * 1000).toFixed(0)} ms`;
  };
  const events = metrics.aisle_events_accepted_total?.[0]?.value;
  const stored = metrics.aisle_events_stored?.[0]?.value;
  parts.push(
    h(
      "div",
      { class: "stats" },
      stat("Searches", count((routes["POST /search"]?.ok || 0) + (routes["GET /search"]?.ok || 0))),
      stat("Events accepted (since start)", count(events)),
      stat("Events stored", count(stored)),
    ),
    h(
      "table",
      { class: "data", id: "routes" },
      h("thead", {}, h("tr", {}, ["Route", "Answered", "4xx", "5xx", "p50 / p95 latency"].map((title) => h("th", {}, title)))),
      h(
        "tbody",
        {},
        Object.entries(routes)
          .sort((a, b) => b[1].ok - a[1].ok)
          .map(([key, row]) => h("tr", {}, h("td", {}, key), h("td", {}, count(row.ok)), h("td", {}, count(row.client)), h("td", {}, count(row.server)), h("td", {}, latency(...key.split(" "))))),
      ),
    ),
    context.features.analytics.length
      ? null
      : h("p", { class: "muted small" }, "Request counts and latency since the service started (from /metrics). Query-level analytics (top queries, queries without results) appear here when the service exposes them under /analytics."),
  );
  return parts;
}

// A value with an interval ({value, ci95: [low, high]}) as "value [low, high]".
function cell(value) {
  if (value && typeof value === "object" && Array.isArray(value.ci95)) {
    const [low, high] = value.ci95;
    return `${value.value === null ? "–" : (value.value * 100).toFixed(1)} % [${low === null ? "–" : (low * 100).toFixed(1)}, ${high === null ? "–" : (high * 100).toFixed(1)}]`;
  }
  return typeof value === "number" ? count(Math.round(value * 1000) / 1000) : String(value ?? "–");
}

// Any analytics answer: its numbers as figures, each list of rows as a table (queries link to a search).
function analyticsReport(body) {
  const figures = Object.entries(body).filter(([name, value]) => typeof value === "number" && name !== "since");
  const tables = Object.entries(body).filter(([, value]) => Array.isArray(value));
  return [
    figures.length ? h("div", { class: "stats" }, figures.map(([name, value]) => stat(name.replaceAll("_", " "), count(value)))) : null,
    tables.map(([name, rows]) => {
      const columns = [...new Set(rows.flatMap((row) => Object.keys(row)))];
      return h(
        "div",
        { class: "analytics-table" },
        h("h4", {}, name.replaceAll("_", " ")),
        rows.length
          ? h(
              "table",
              { class: "data", dataset: { table: name } },
              h("thead", {}, h("tr", {}, columns.map((column) => h("th", {}, column.replaceAll("_", " "))))),
              h(
                "tbody",
                {},
                rows.map((row) =>
                  h(
                    "tr",
                    {},
                    columns.map((column) =>
                      h("td", {}, column === "query" ? h("a", { href: href({ q: row.query }), "data-nav": true }, row.query) : cell(row[column])),
                    ),
                  ),
                ),
              ),
            )
          : h("p", { class: "muted small" }, "Nothing yet."),
      );
    }),
  ];
}
