/**
 * The Explorer's page: a tab per panel, each panel an ES module in panels/ with
 *   export const title: string
 *   export async function mount(root, info)   // info: GET /api/info
 * The open panel is the URL's ?panel= key; each panel keeps its own state in the URL too
 * (lib/state.js), so a reload or a shared link shows the same view.
 */

import * as api from "./lib/api.js";
import {h, showError} from "./lib/dom.js";
import {exportButtons} from "./lib/export.js";
import {pythonButton} from "./lib/python.js";
import * as state from "./lib/state.js";

const PANELS = ["tokens", "attention", "walkthrough", "next", "intervene", "compare", "embeddings", "runs",
                "molecules", "alignment"];
const TITLES = {tokens: "Tokens", attention: "Attention", walkthrough: "Walkthrough", next: "Next token",
                intervene: "Intervene", compare: "Compare", embeddings: "Embeddings", runs: "Training runs",
                molecules: "Molecules", alignment: "Cross-attention"};

let info = null;

async function open(name) {
  if (!PANELS.includes(name)) name = "tokens";
  state.set({panel: name});
  for (const button of document.querySelectorAll("#tabs button")) {
    if (button.dataset.panel === name) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
  const root = document.getElementById("panel");
  root.replaceChildren();
  root.dataset.panel = name;
  delete root.dataset.trace; // set again by the new panel's prompt bar when it runs
  try {
    const panel = await import(`./panels/${name}.js`);
    await panel.mount(root, info);
  } catch (error) {
    showError(root, error);
  }
}

async function start() {
  const tabs = document.getElementById("tabs");
  for (const name of PANELS) {
    tabs.append(h("button", {dataset: {panel: name}, onclick: () => {
      // switching panels keeps the shared keys (model, text, chat) and drops the other panel's own
      const keep = {};
      for (const key of ["model", "text", "chat"]) keep[key] = state.get(key);
      history.replaceState(null, "", location.pathname);
      state.set(keep);
      open(name);
    }}, TITLES[name]));
  }
  tabs.after(pythonButton(), exportButtons()); // the lucidlm code behind the open view; the view as a picture
  try {
    info = await api.get("info");
  } catch (error) {
    showError(document.getElementById("panel"), error);
    return;
  }
  await open(state.get("panel", "tokens"));
}

start();
