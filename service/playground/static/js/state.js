// The page's state lives in the address bar (shareable links); only the API key and this tab's
// session id stay in session storage.

import { api, newId } from "./api.js";

const listeners = [];
const TAB_STORAGE = "aisle.tab";

export function params() {
  return new URLSearchParams(window.location.search);
}

export function onNavigate(listener) {
  listeners.push(listener);
}

export function notify() {
  for (const listener of listeners) listener(params());
}

// Links to a state: the shopper ("user") follows every link unless overridden.
export function href(updates, { keepShopper = true } = {}) {
  const next = new URLSearchParams();
  const shopper = params().get("user");
  if (keepShopper && shopper) next.set("user", shopper);
  for (const [name, value] of Object.entries(updates)) {
    if (value === undefined || value === null || value === "") next.delete(name);
    else if (Array.isArray(value)) {
      next.delete(name);
      for (const item of value) next.append(name, item);
    } else next.set(name, value);
  }
  const text = next.toString();
  return text ? `/?${text}` : "/";
}

// Changes some parameters of the current state (null removes one).
export function update(updates, { replace = false } = {}) {
  const next = params();
  for (const [name, value] of Object.entries(updates)) {
    next.delete(name);
    if (Array.isArray(value)) for (const item of value) next.append(name, item);
    else if (value !== undefined && value !== null && value !== "") next.set(name, value);
  }
  go(`/?${next.toString()}`.replace(/\?$/, ""), { replace });
}

export function go(url, { replace = false } = {}) {
  if (replace) window.history.replaceState(null, "", url);
  else window.history.pushState(null, "", url);
  notify();
}

export function shopper() {
  return params().get("user") || "";
}

function tabId() {
  let id = sessionStorage.getItem(TAB_STORAGE);
  if (!id) {
    id = newId("tab");
    sessionStorage.setItem(TAB_STORAGE, id);
  }
  return id;
}

// One session per shopper and tab: switching shoppers must not link their sessions together.
export function sessionId() {
  return `${tabId()}-${shopper() || "visitor"}`;
}

export function requester() {
  const user = shopper();
  return user ? { user_id: user, session_id: sessionId() } : { session_id: sessionId() };
}

const activity = [];
const activityListeners = [];

export function onActivity(listener) {
  activityListeners.push(listener);
}

export function recentActivity() {
  return activity.slice();
}

// Sends one event for the current shopper; attribution fields only when the service takes them.
export async function sendEvent(type, item, features, context = {}) {
  const event = { event_id: newId("ev"), item_id: item.id, type, timestamp: Date.now() / 1000, ...requester() };
  if (features.attribution && context.request_id) {
    event.request_id = context.request_id;
    if (context.position) event.position = context.position;
  }
  if (features.attribution && type === "purchase" && typeof item.price === "number") event.revenue = item.price;
  const answer = await api("/events", { method: "POST", body: { events: [event] } });
  const entry = { type, item, shopper: shopper() || "visitor", at: new Date(), answer };
  activity.unshift(entry);
  activity.splice(30);
  for (const listener of activityListeners) listener(entry);
  return answer;
}
