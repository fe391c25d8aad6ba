/**
 * "Save as picture": the open panel, exactly as it looks, as an SVG file or a PNG image.
 *
 * How a web page becomes a picture without a server or a library: SVG can hold HTML in a
 * <foreignObject>, and the browser draws such an SVG like any other image. So
 *   1. the panel (#panel) is cloned, and the clone is made self-contained:
 *      - every <canvas> (heatmaps, uPlot charts) becomes an <img> of its own pixels (toDataURL),
 *        placed and sized by the canvas's computed style (a CSS rule written for `canvas` would no
 *        longer match it);
 *      - form controls get their current state as attributes (a clone copies attributes, not what
 *        was typed or ticked);
 *      - links lose their href and any src that is not a data: URL is dropped: a picture opens
 *        nothing;
 *      - a box scrolled on the page shows the same part in the picture (keepScroll);
 *   2. the page's stylesheets are copied into a <style> inside the SVG, so the clone's classes
 *      look as they do on the page (pseudo-elements and all); a rule that names a url() other than
 *      data: is left out, so the file references nothing outside itself; viewport units (vh)
 *      become the page's pixels;
 *   3. SVG: <svg><foreignObject><body style=white>[style][clone]</body></foreignObject></svg>,
 *      sized to the panel's box; PNG: that SVG drawn on a canvas at 2x, then canvas.toBlob.
 * The pure helpers (file name, which CSS to keep, the canvas's style, the PNG scale, the SVG
 * wrapper) are tested under node in tests/js/export.test.mjs; tests/test_explorer_export.py
 * exports every panel in Chromium.
 */

import { h, status } from "./dom.js";

const PNG_SCALE = 2; // device pixels per CSS pixel in the PNG: sharp text on a high-density screen
const MAX_SIDE = 16384; // browsers refuse larger canvases (Chromium: 65535 a side, ~268M pixels)
const MAX_PIXELS = 64e6; // 256 MB of RGBA: a very tall panel is drawn at a lower scale instead
const XHTML_NS = "http://www.w3.org/1999/xhtml";
const SVG_NS = "http://www.w3.org/2000/svg";

// What places and paints a canvas; copied onto the <img> that replaces it.
export const CANVAS_PROPERTIES = [
  "display", "position", "top", "right", "bottom", "left", "z-index", "float", "vertical-align",
  "box-sizing", "width", "height", "max-width", "max-height",
  "margin-top", "margin-right", "margin-bottom", "margin-left",
  "padding-top", "padding-right", "padding-bottom", "padding-left",
  "border-top-width", "border-right-width", "border-bottom-width", "border-left-width",
  "border-top-style", "border-right-style", "border-bottom-style", "border-left-style",
  "border-top-color", "border-right-color", "border-bottom-color", "border-left-color", "border-radius",
  "background-color", "opacity", "transform", "transform-origin", "image-rendering",
  "grid-row-start", "grid-row-end", "grid-column-start", "grid-column-end", "align-self", "justify-self",
  "flex-grow", "flex-shrink", "flex-basis", "order",
];

/**
 * The download's name: lucidlm-<panel>-<yyyymmdd-hhmmss>.<ext>, local time, so files sort by when
 * they were saved. exportFileName("attention", "svg", new Date(2025, 0, 2, 3, 4, 5))
 * -> "lucidlm-attention-20250102-030405.svg". Anything but a-z, 0-9 and "-" in the panel's name
 * becomes "-" (a file name is no place for a slash).
 */
export function exportFileName(panel, ext, date = new Date()) {
  const two = (n) => String(n).padStart(2, "0");
  const day = `${date.getFullYear()}${two(date.getMonth() + 1)}${two(date.getDate())}`;
  const time = `${two(date.getHours())}${two(date.getMinutes())}${two(date.getSeconds())}`;
  const name = String(panel || "panel").toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/^-+|-+$/g, "") || "panel";
  return `lucidlm-${name}-${day}-${time}.${ext}`;
}

/** True when a CSS text names a resource outside itself: url(...) other than a data: URL, or @import. */
export function referencesOutside(cssText) {
  return /@import/i.test(cssText) || /url\((?!\s*['"]?data:)/i.test(cssText);
}

/**
 * The stylesheet the picture carries: the page's rules (cssText of each), without those that would
 * fetch something (a font, an image, another stylesheet): the file must stand alone.
 */
export function selfContainedCss(ruleTexts) {
  return ruleTexts.filter((text) => !referencesOutside(text)).join("\n");
}

/**
 * The inline style of the <img> that stands in for a canvas: `get(property)` is the canvas's
 * computed value (getComputedStyle(canvas).getPropertyValue). Empty values are skipped.
 * canvasStyle((p) => ({width: "300px", display: "block"})[p] ?? "") -> "display: block; width: 300px"
 */
export function canvasStyle(get) {
  const parts = [];
  for (const property of CANVAS_PROPERTIES) {
    const value = get(property);
    if (value !== undefined && value !== null && value !== "") parts.push(`${property}: ${value}`);
  }
  return parts.join("; ");
}

/**
 * The PNG's device pixels per CSS pixel: `wanted` unless the canvas would be too big, then the
 * largest scale that fits (a 600 x 20,000 px panel still saves, a little less sharp).
 * pngScale(1000, 800) -> 2; pngScale(1000, 10000) -> 1.6384 (16,384 px tall)
 */
export function pngScale(width, height, wanted = PNG_SCALE) {
  if (!(width > 0 && height > 0)) throw new Error(`nothing to draw: the panel is ${width} x ${height} px`);
  return Math.min(wanted, MAX_SIDE / width, MAX_SIDE / height, Math.sqrt(MAX_PIXELS / (width * height)));
}

/**
 * CSS lengths in viewport units (vh, vw, vmin, vmax and their d/s/l forms) turned into the page's
 * pixels: inside a picture the "viewport" is the picture itself, so `max-height: 78vh` would
 * mean another height there. resolveViewportUnits("max-height: 78vh", 1400, 900)
 * -> "max-height: 702px"
 */
export function resolveViewportUnits(css, viewportWidth, viewportHeight) {
  const unit = { vw: viewportWidth, vh: viewportHeight, vmin: Math.min(viewportWidth, viewportHeight),
    vmax: Math.max(viewportWidth, viewportHeight) };
  return css.replace(/(?<![\w.-])(-?(?:\d+\.?\d*|\.\d+))[dsl]?(vmin|vmax|vw|vh)\b/g,
    (_, number, name) => `${+(Number(number) * unit[name] / 100).toFixed(3)}px`);
}

/**
 * XML 1.0 forbids most control characters even as &#N; references, and the browser's serialiser
 * writes them as they are (a prompt may hold one): each becomes U+FFFD, the replacement character,
 * so the file still parses. xmlSafe("a\u0001b\tc") -> "a\uFFFDb\tc" (tab, newline, CR are allowed).
 */
export function xmlSafe(text) {
  return text.replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g, "\uFFFD");
}

/** Text made safe inside an XML element or attribute. */
export function escapeXml(text) {
  return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/**
 * The SVG document around the serialised XHTML of the panel: `width` x `height` CSS pixels drawn
 * at `scale` (the viewBox keeps the content's own coordinates, so a scale of 2 is a sharper
 * picture of the same layout, not a wider layout), on white.
 */
export function svgDocument(xhtml, width, height, { scale = 1, title = "" } = {}) {
  const w = Math.round(width * scale);
  const h = Math.round(height * scale);
  return `<svg xmlns="${SVG_NS}" width="${w}" height="${h}" viewBox="0 0 ${width} ${height}">` +
    (title ? `<title>${escapeXml(title)}</title>` : "") +
    `<rect width="${width}" height="${height}" fill="#ffffff"/>` +
    `<foreignObject x="0" y="0" width="${width}" height="${height}">${xhtml}</foreignObject></svg>`;
}

// ---------------------------------------------------------------------------------------------
// The DOM part (a browser only)

/** Every rule of the page's stylesheets, as text (a stylesheet from elsewhere cannot be read: skipped). */
function pageCssRules() {
  const texts = [];
  for (const sheet of document.styleSheets) {
    let rules;
    try {
      rules = sheet.cssRules;
    } catch {
      continue; // another origin's stylesheet: unreadable, and the Explorer has none
    }
    for (const rule of rules) texts.push(rule.cssText);
  }
  return texts;
}

/**
 * True when `el` scrolls but its scrollbars take no room on the page (overlay scrollbars, a
 * headless browser). The picture must not give them room either: a scrollbar there would narrow
 * the box and wrap its lines elsewhere. (Where they take room, the picture draws them, as the
 * page does.)
 */
function scrollsWithoutRoom(el) {
  const style = getComputedStyle(el);
  const scrolls = (overflow) => overflow === "auto" || overflow === "scroll";
  if (!scrolls(style.overflowX) && !scrolls(style.overflowY)) return false;
  const px = (name) => parseFloat(style[name]) || 0;
  const beside = el.offsetWidth - el.clientWidth - px("borderLeftWidth") - px("borderRightWidth");
  const below = el.offsetHeight - el.clientHeight - px("borderTopWidth") - px("borderBottomWidth");
  return Math.round(beside) <= 0 && Math.round(below) <= 0;
}

/** The <img> standing in for `canvas` in the picture: its pixels, its attributes, its place. */
function canvasImage(canvas) {
  const img = document.createElement("img");
  for (const { name, value } of canvas.attributes) {
    if (name !== "width" && name !== "height") img.setAttribute(name, value);
  }
  img.setAttribute("alt", canvas.getAttribute("aria-label") ?? "");
  if (canvas.width > 0 && canvas.height > 0) {
    try {
      img.setAttribute("src", canvas.toDataURL("image/png"));
    } catch {
      // a canvas holding another origin's pixels refuses to be read; the picture keeps its place, blank
    }
  }
  const computed = getComputedStyle(canvas);
  img.setAttribute("style", canvasStyle((p) => computed.getPropertyValue(p)));
  return img;
}

/**
 * Make `copy` (a clone of `original`) show what `original` shows, without referencing anything.
 * Returns the node that stands for `original` in the picture (`copy`, an <img>, or null if dropped).
 */
function freeze(original, copy) {
  const tag = original.localName;
  if (tag === "canvas") {
    const img = canvasImage(original);
    copy.replaceWith(img);
    return img;
  }
  if (tag === "script" || tag === "iframe" || tag === "object" || tag === "embed") {
    copy.remove(); // an SVG opened on its own would run a script
    return null;
  }
  if (scrollsWithoutRoom(original)) copy.style.scrollbarWidth = "none";
  if (tag === "input") {
    if (original.type === "checkbox" || original.type === "radio") {
      if (original.checked) copy.setAttribute("checked", "");
      else copy.removeAttribute("checked");
    } else if (original.type !== "file" && original.type !== "password") {
      copy.setAttribute("value", original.value);
    }
  } else if (tag === "textarea") {
    copy.textContent = original.value;
  } else if (tag === "option") {
    if (original.selected) copy.setAttribute("selected", "");
    else copy.removeAttribute("selected");
  }
  // nothing to open: links lead nowhere, and only data: images stay (an SVG <use href="#id"> stays too)
  for (const name of ["href", "xlink:href", "src", "srcset", "poster", "action", "formaction"]) {
    const value = copy.getAttribute(name);
    if (value !== null && !value.startsWith("data:") && !(name.endsWith("href") && value.startsWith("#"))) {
      copy.removeAttribute(name);
    }
  }
  return copy;
}

/**
 * A picture cannot scroll, so a box the reader scrolled (a long heatmap, a column of tokens) shows
 * the part they were looking at by moving its children instead: `position: relative` with
 * top/left = -scroll moves an element's drawing without changing anyone's layout (in a grid or a
 * flex box as in a plain block). Children placed another way (absolute, sticky) stay.
 */
function keepScroll(original, standIn) {
  const dy = original.scrollTop;
  const dx = original.scrollLeft;
  for (const child of original.children) {
    const node = standIn.get(child);
    if (!node) continue;
    const position = getComputedStyle(child).position;
    if (position !== "static" && position !== "relative") continue;
    const offset = (side) => (position === "relative" ? parseFloat(getComputedStyle(child)[side]) || 0 : 0);
    node.style.position = "relative";
    node.style.top = `${offset("top") - dy}px`;
    node.style.left = `${offset("left") - dx}px`;
  }
}

/**
 * The panel as an SVG picture: {svg (the text), width, height (CSS pixels), xhtml (the inner
 * part, to draw again at another scale)}.
 */
export function panelPicture(root, title = "") {
  const box = root.getBoundingClientRect();
  // the panel's own box, widened to any content that overflows it sideways
  const width = Math.ceil(Math.max(box.width, root.scrollWidth));
  const height = Math.ceil(Math.max(box.height, root.scrollHeight));
  if (width <= 0 || height <= 0) throw new Error("this panel shows nothing to save yet");

  const copy = root.cloneNode(true);
  const originals = root.querySelectorAll("*");
  const copies = copy.querySelectorAll("*"); // a static list, same order: the clone has the same tree
  const standIn = new Map(); // original element -> what shows it in the picture
  for (let i = 0; i < originals.length; i++) standIn.set(originals[i], freeze(originals[i], copies[i]));
  for (const original of originals) {
    if (original.scrollTop || original.scrollLeft) keepScroll(original, standIn);
  }
  copy.style.width = `${box.width}px`; // the same line breaks as on the page
  copy.style.margin = "0";

  // A <body> in the picture too, so the page's `body` rule (font, colour, line height as a factor
  // of each element's font size) applies as on the page.
  const frame = document.createElementNS(XHTML_NS, "body");
  frame.setAttribute("style", [
    "margin: 0", `width: ${width}px`, `height: ${height}px`, "overflow: hidden", "background: #ffffff",
    document.documentElement.style.cssText, // variables a script set on <html>
  ].filter(Boolean).join("; "));
  const style = document.createElementNS(XHTML_NS, "style");
  style.textContent = resolveViewportUnits(selfContainedCss(pageCssRules()), window.innerWidth, window.innerHeight);
  frame.append(style, copy);

  const xhtml = xmlSafe(new XMLSerializer().serializeToString(frame));
  return { svg: svgDocument(xhtml, width, height, { title }), xhtml, width, height, title };
}

/** The picture drawn at `scale` device pixels per CSS pixel on a white canvas -> a PNG Blob. */
export async function picturePng(picture, scale = pngScale(picture.width, picture.height)) {
  const svg = svgDocument(picture.xhtml, picture.width, picture.height, { scale, title: picture.title });
  const image = new Image();
  image.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;
  try {
    await image.decode();
  } catch {
    throw new Error("the browser could not draw this panel as an image (try SVG)");
  }
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(picture.width * scale);
  canvas.height = Math.round(picture.height * scale);
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve, reject) => canvas.toBlob(
    (blob) => (blob ? resolve(blob) : reject(new Error("the browser could not encode the PNG"))), "image/png"));
}

/** Hand `blob` to the browser as a download named `name`. */
function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000); // the download has long started by then
}

/** Save the open panel as "svg" or "png". */
export async function exportPanel(format) {
  const root = document.getElementById("panel");
  const panel = root.dataset.panel || "panel";
  const tab = document.querySelector(`#tabs button[data-panel="${panel}"]`)?.textContent ?? panel;
  const picture = panelPicture(root, `lucidlm explorer: ${tab}`);
  const name = exportFileName(panel, format);
  const blob = format === "png"
    ? await picturePng(picture)
    : new Blob([`<?xml version="1.0" encoding="UTF-8"?>\n${picture.svg}\n`], { type: "image/svg+xml" });
  download(blob, name);
  return name;
}

/** The header's "PNG" "SVG" buttons, beside "copy as Python / export": the view as a picture. */
export function exportButtons() {
  const button = (format) => {
    const el = h("button", {
      class: "small", id: `export-${format}`, title: `save this panel as a ${format.toUpperCase()} picture`,
      onclick: async () => {
        el.disabled = true;
        status(`saving the panel as ${format.toUpperCase()}…`);
        try {
          status(`saved ${await exportPanel(format)}`);
        } catch (error) {
          status(`could not save the picture: ${error.message}`);
        } finally {
          el.disabled = false;
        }
      },
    }, format.toUpperCase());
    return el;
  };
  return h("span", { class: "export-buttons", role: "group", "aria-label": "save this panel as a picture" },
    button("png"), button("svg"));
}
