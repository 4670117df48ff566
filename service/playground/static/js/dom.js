// Small DOM helpers: elements are built with h(), never from HTML strings, so catalogue text
// cannot inject markup.

export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") element.className = value;
    else if (name === "style") {
      for (const [property, setting] of Object.entries(value)) {
        if (property.startsWith("--")) element.style.setProperty(property, String(setting));
        else element.style[property] = setting;
      }
    }
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : String(child));
  }
}

export function replaceChildren(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

const priceFormat = new Intl.NumberFormat("en", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const countFormat = new Intl.NumberFormat("en");

export function price(value) {
  return typeof value === "number" ? priceFormat.format(value) : "";
}

export function count(value) {
  return typeof value === "number" ? countFormat.format(value) : "–";
}

export function score(value, digits = 3) {
  return typeof value === "number" ? value.toFixed(digits) : "–";
}

export function percent(value, digits = 1) {
  return typeof value === "number" ? `${(value * 100).toFixed(digits)} %` : "–";
}

export function leaf(category) {
  const parts = String(category || "").split(">").map((part) => part.trim()).filter(Boolean);
  return parts.length ? parts[parts.length - 1] : "";
}

// A stable hue per text: placeholder tiles of one category share a colour.
export function hue(text) {
  let hash = 0;
  for (const char of String(text)) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  return hash % 360;
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
