/**
 * "Copy as Python": a header button that shows the few lines of lucidlm code computing the open
 * view (GET /api/python with the page's own URL state), ready to paste into a notebook.
 */

import * as api from "./api.js";
import { h } from "./dom.js";

/** The button, and the dialog it opens. */
export function pythonButton() {
  const code = h("pre", { class: "py-code", id: "py-code" });
  const message = h("div", { class: "py-message" });
  const copy = h("button", { class: "small", id: "py-copy" }, "Copy");
  const downloads = h("p", { class: "py-downloads", id: "py-downloads" });
  const dialog = h("dialog", { class: "py-dialog", id: "py-dialog" },
    h("h3", {}, "This view in Python"),
    h("p", { class: "hint" }, "lucidlm code that computes what this panel shows; paste it into a notebook and change it."),
    message, code, downloads,
    h("div", { class: "row" }, copy, h("button", { class: "small", onclick: () => dialog.close() }, "Close")));
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(code.textContent);
      copy.textContent = "Copied";
    } catch {
      copy.textContent = "Select the code and copy it"; // clipboard refused (browser setting)
    }
  });
  const button = h("button", {
    class: "small", id: "py-open", title: "the lucidlm code behind this view",
    onclick: async () => {
      copy.textContent = "Copy";
      message.replaceChildren();
      // the prompt this panel last ran: its tensors, to load in numpy (np.load) or anything that reads JSON
      const trace = document.getElementById("panel")?.dataset.trace;
      downloads.replaceChildren(...(trace ? ["The tensors of this prompt's run (ids, attention weights, residual " +
        "stream, next-token logits): ",
      h("a", { href: `/api/export?trace=${trace}&format=npz`, download: "" }, ".npz"), " · ",
      h("a", { href: `/api/export?trace=${trace}&format=json`, download: "" }, ".json")] : []));
      code.textContent = "…";
      dialog.showModal();
      try {
        const params = Object.fromEntries(new URLSearchParams(location.search));
        code.textContent = (await api.get("python", params)).code;
      } catch (error) {
        code.textContent = "";
        message.replaceChildren(h("div", { class: "error", role: "alert" }, error.message));
      }
    },
  }, "copy as Python / export");
  document.body.append(dialog);
  return button;
}
