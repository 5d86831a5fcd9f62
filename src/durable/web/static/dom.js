// Building the page: elements and how values read. Every value from the server is inserted as
// text (textContent, attributes set one by one), never as HTML: a workflow name, a result, a
// chunk or an error message cannot inject markup.

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : String(child));
  }
}

export function byId(id) { return document.getElementById(id); }

/**
 * Make ``old`` look like ``fresh`` while keeping the nodes that are alike: a redraw then leaves a
 * click in progress, a hover, focus and open <details> where they were. Listeners stay the old
 * node's (so keep them on nodes whose meaning does not change, like a row keyed by its id).
 */
export function morph(old, fresh) {
  if (old.nodeType !== fresh.nodeType || old.nodeName !== fresh.nodeName) {
    old.replaceWith(fresh);
    return fresh;
  }
  if (old.nodeType !== Node.ELEMENT_NODE) {
    if (old.nodeValue !== fresh.nodeValue) old.nodeValue = fresh.nodeValue;
    return old;
  }
  for (const { name } of [...old.attributes]) if (!fresh.hasAttribute(name)) old.removeAttribute(name);
  for (const { name, value } of fresh.attributes) {
    if (name === "style") {
      if (old.style.cssText !== fresh.style.cssText) old.style.cssText = fresh.style.cssText;  // CSSOM: the CSP allows it
    } else if (old.getAttribute(name) !== value) {
      old.setAttribute(name, value);
    }
  }
  const before = [...old.childNodes];
  const after = [...fresh.childNodes];
  if (before.length !== after.length) old.replaceChildren(...after);
  else before.forEach((child, i) => morph(child, after[i]));
  return old;
}

/** Put ``nodes`` into ``container`` in this order, moving only when the order changed. */
export function placeChildren(container, nodes) {
  const current = container.children;
  if (current.length !== nodes.length || nodes.some((node, i) => current[i] !== node)) container.replaceChildren(...nodes);
}

export function show(node, visible) { node.hidden = !visible; }

export const TERMINAL = new Set(["completed", "failed", "cancelled"]);

const SAYS = { retrying: "failed, retried", lost: "lost (its worker died)" };

/** A status as a badge; ``data-status`` keeps the word the server sent. */
export function statusBadge(status) {
  return el("span", { class: `status ${status}`, "data-status": status, text: SAYS[status] || status });
}

// -- time ----------------------------------------------------------------------------------------

export function ms(iso) { return iso ? Date.parse(iso) : null; }

export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const today = new Date();
  const sameDay = date.toDateString() === today.toDateString();
  return sameDay ? date.toLocaleTimeString() : date.toLocaleString();
}

export function fullTime(iso) { return iso ? new Date(iso).toString() : ""; }

export function timeCell(iso) {
  return el("time", { datetime: iso || undefined, title: fullTime(iso), text: when(iso) });
}

/** A duration in seconds, as a person reads it: 12 ms, 1.52 s, 3 m 20 s, 2 h 5 m, 3 d 4 h. */
export function seconds(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "";
  const s = Math.abs(value);
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m ${Math.floor(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} m`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** "in 3 m 20 s" / "4 s ago" for a moment relative to now. */
export function relative(iso, now = Date.now()) {
  const delta = (ms(iso) - now) / 1000;
  return delta >= 0 ? `in ${seconds(delta)}` : `${seconds(-delta)} ago`;
}

// -- values --------------------------------------------------------------------------------------

export function pretty(value) { return JSON.stringify(value, null, 2); }

export function compact(value) { return value === undefined ? "" : JSON.stringify(value); }

/** A block of JSON; long ones fold into a <details> so a page of them stays readable. */
export function jsonBlock(value, { fold = 600, id } = {}) {
  const text = pretty(value);
  if (text.length <= fold) return el("pre", { class: "json", id, text });
  return el("details", { class: "json", id },
    el("summary", { text: `${compact(value).slice(0, 120)}…` }),
    el("pre", { class: "json", text }));
}

export function errorText(error) { return error ? `${error.type}: ${error.message}` : ""; }

/** An error: its type and message, and its traceback (folded) when the server sent one. */
export function errorBlock(error, { id } = {}) {
  if (!error) return null;
  const box = el("div", { class: "error-box", id }, el("p", { class: "error", text: errorText(error) }));
  if (error.traceback) {
    box.append(el("details", { class: "traceback" }, el("summary", { text: "traceback" }), el("pre", { text: error.traceback })));
  }
  return box;
}

export function definitionList(pairs) {
  return pairs.filter(([, value]) => value !== "" && value !== null && value !== undefined)
    .flatMap(([key, value]) => [el("dt", { text: key }), el("dd", {}, value)]);
}
