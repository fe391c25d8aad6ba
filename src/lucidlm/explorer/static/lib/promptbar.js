/**
 * The prompt bar the model panels share (attention, walkthrough, next token): pick a model, type
 * a prompt, run it through the model once (POST /api/trace). The model, text and chat mode live in
 * the URL (keys model, text, chat), so every model panel opens on the same prompt.
 */

import * as api from "./api.js";
import {h, showError, status} from "./dom.js";
import * as state from "./state.js";

/**
 * Mount the bar in `root`. `onTrace(meta)` is called with /api/trace's answer (trace id, ids,
 * labels, n_layer, n_head, kv_heads, causal, kind, next (decoders)) after each run.
 * `options.decodersOnly`: list only the models that predict a next token... known once loaded, so
 * the server's error message is shown instead when an encoder is picked.
 * Returns {run, element}.
 */
export function promptBar(root, info, onTrace, options = {}) {
  const models = info.models.filter((m) => !m.seq2seq).map((m) => m.name); // encoder-decoders: Cross-attention
  const model = h("select", {"aria-label": "model", id: "model"},
    models.map((name) => h("option", {value: name}, name)));
  model.value = models.includes(state.get("model")) ? state.get("model") : models[0];
  const text = h("textarea", {"aria-label": "prompt", id: "prompt", rows: 2, spellcheck: "false"});
  text.value = state.get("text", options.defaultText ?? "The capital of France is");
  const chat = h("input", {type: "checkbox", id: "chat"});
  chat.checked = state.get("chat") === "1";
  const button = h("button", {class: "primary", id: "run"}, "Run");
  const message = h("div", {class: "promptbar-message"});
  const element = h("div", {class: "card"},
    h("div", {class: "promptbar"}, text,
      h("div", {class: "controls"}, model, h("label", {}, chat, " as a chat message"), button)),
    h("div", {class: "hint"}, options.hint ?? "Ctrl+Enter runs the prompt through the model once and keeps every tensor."),
    message);
  root.append(element);

  async function run() {
    state.set({model: model.value, text: text.value, chat: chat.checked ? "1" : null});
    message.replaceChildren();
    button.disabled = true;
    status(`running ${model.value}…`);
    const started = performance.now();
    try {
      const meta = await api.post("trace", {model: model.value, text: text.value, chat: chat.checked});
      status(`${meta.ids.length} tokens through ${meta.model} in ${Math.round(performance.now() - started)} ms`);
      element.closest("#panel")?.setAttribute("data-trace", meta.trace); // for "export tensors" (lib/python.js)
      await onTrace(meta);
    } catch (error) {
      status("");
      showError(message, error);
    } finally {
      button.disabled = false;
    }
  }
  button.addEventListener("click", run);
  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) run();
  });
  return {run, element, model, text, chat};
}
