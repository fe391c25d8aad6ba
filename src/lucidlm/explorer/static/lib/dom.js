/** Small DOM helpers shared by the panels. */

/**
 * h("div", {class: "card", onclick: fn}, "text", child) -> an element. Attributes starting with
 * "on" become event listeners; `null`/`false` children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Show an error message in `box` (a clear sentence in the page, never a silent failure). */
export function showError(box, error) {
  box.replaceChildren(h("div", {class: "error", role: "alert"}, error?.message ?? String(error)));
}

/** Set the header's status line (what is running, how long it took). */
export function status(text) {
  const el = document.getElementById("status");
  if (el) el.textContent = text;
}
