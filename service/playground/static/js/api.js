// The service's HTTP API, called exactly as a shop's front end would, plus feature detection
// from its OpenAPI document: optional endpoints and request fields light up parts of the page.

const KEY_STORAGE = "aisle.apiKey";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

export async function api(path, { method = "GET", body, query, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const key = apiKey();
  if (key) headers["X-API-Key"] = key;
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== "") params.set(name, value);
    }
    const text = params.toString();
    if (text) url += `?${text}`;
  }
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || "error", error.message || `${response.status} ${response.statusText}`);
  }
  return data;
}

function resolve(doc, schema) {
  let current = schema;
  for (let depth = 0; current && depth < 8; depth += 1) {
    if (current.$ref) {
      const path = current.$ref.replace(/^#\//, "").split("/");
      current = path.reduce((node, part) => (node ? node[part] : undefined), doc);
    } else if (current.anyOf || current.oneOf) {
      current = (current.anyOf || current.oneOf).find((option) => option.type !== "null");
    } else {
      return current;
    }
  }
  return current;
}

function bodySchema(doc, path, method = "post") {
  const operation = doc.paths?.[path]?.[method];
  return resolve(doc, operation?.requestBody?.content?.["application/json"]?.schema) || {};
}

// What this service offers beyond the first contract, read from /openapi.json.
export async function detectFeatures() {
  const doc = await api("/openapi.json");
  const paths = doc.paths || {};
  const search = bodySchema(doc, "/search");
  const fields = search.properties || {};
  const filters = resolve(doc, fields.filters) || {};
  const events = bodySchema(doc, "/events");
  const event = resolve(doc, resolve(doc, events.properties?.events)?.items) || {};
  const eventFields = event.properties || {};
  const pathNames = Object.keys(paths);
  return {
    version: doc.info?.version,
    suggest: Boolean(paths["/suggest"]?.get),
    facets: "facets" in fields,
    sort: "sort" in fields,
    offset: "offset" in fields,
    browse: !(search.required || []).includes("query"),
    // Filters on any field: the filters object takes keys beyond the fixed ones.
    anyFilter: filters.additionalProperties !== undefined && filters.additionalProperties !== false,
    attribution: "request_id" in eventFields && "position" in eventFields,
    // GET /items/{item_id} (the live catalogue's read route); else the playground's own helper.
    itemRead: Boolean(paths["/items/{item_id}"]?.get),
    experiments: pathNames.some((path) => path.startsWith("/experiments/") && paths[path].get),
    experimentList: Boolean(paths["/experiments"]?.get),
    analytics: pathNames.filter((path) => path.startsWith("/analytics") && paths[path].get && !path.includes("{")),
  };
}

function randomHex(bytes) {
  const values = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(values, (value) => value.toString(16).padStart(2, "0")).join("");
}

export function newId(prefix) {
  return `${prefix}-${randomHex(8)}`;
}
