/**
 * The Embeddings panel: sentences -> vectors (all-MiniLM-L6-v2, 384 numbers each) -> how alike
 * they are. POST /api/embeddings gives the (N, N) cosine-similarity matrix, drawn as a heatmap,
 * and the 2-D PCA map of the vectors, drawn as a scatter plot; with a corpus (lucidlm explore
 * --corpus FILE) also each sentence's nearest corpus lines.
 *
 * URL key: sents (the sentences, one per line).
 */

import * as api from "../lib/api.js";
import {viridis} from "../lib/colors.js";
import {h, showError, status} from "../lib/dom.js";
import * as state from "../lib/state.js";

export const title = "Embeddings";

const DEFAULT_SENTENCES = [
  "The cat is sleeping on the warm windowsill.",
  "My kitten loves chasing a ball of yarn.",
  "Stock markets fell sharply after the interest rate rise.",
  "The bank raised its savings rate to four percent.",
  "Heavy rain and strong winds are expected tomorrow.",
  "It will be sunny and warm all weekend.",
];
const SVG_NS = "http://www.w3.org/2000/svg";
const PRINT_VALUES_UP_TO = 12; // print the cosine in each cell when there are at most this many sentences

/** An SVG element: svg("rect", {x: 1, ...}, children...). */
function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined) continue;
    if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** "The cat is sleeping on the warm…" : the first `n` characters, for labels. */
function snippet(text, n = 18) {
  return text.length <= n ? text : text.slice(0, n - 1).trimEnd() + "…";
}

/** The (N, N) cosine matrix as a heatmap: cell (i, j) = cos(e_i, e_j), viridis over 0..1. */
function heatmap(cosine, sentences) {
  const n = cosine.length;
  const cell = Math.max(14, Math.min(48, Math.floor(380 / n)));
  const left = 42;
  const top = 42;
  const size = n * cell;
  const root = svg("svg", {width: left + size + 4, height: top + size + 4, class: "emb-heatmap", id: "emb-heatmap",
    role: "img", "aria-label": "cosine similarity of every pair of sentences"});
  root.append(
    svg("text", {x: left + size / 2, y: 12, "text-anchor": "middle", class: "emb-axis-title"}, "sentence"),
    svg("text", {x: 12, y: top + size / 2, "text-anchor": "middle", class: "emb-axis-title",
      transform: `rotate(-90 12 ${top + size / 2})`}, "sentence"));
  const step = n > 30 ? 5 : 1; // with many sentences, number every 5th
  for (let i = 0; i < n; i++) {
    if (i % step !== 0 && i !== n - 1) continue;
    root.append(
      svg("text", {x: left + i * cell + cell / 2, y: top - 8, "text-anchor": "middle", class: "emb-tick"}, i + 1),
      svg("text", {x: left - 6, y: top + i * cell + cell / 2 + 4, "text-anchor": "end", class: "emb-tick"}, i + 1));
  }
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const value = cosine[i][j];
      const x = left + j * cell;
      const y = top + i * cell;
      root.append(svg("rect", {x, y, width: cell, height: cell, fill: viridis(value), class: "emb-cell",
        dataset: {i, j, value}},
      svg("title", {}, `sentence ${i + 1} · sentence ${j + 1}: cosine ${value.toFixed(3)}\n` +
        `${i + 1}. ${snippet(sentences[i], 60)}\n${j + 1}. ${snippet(sentences[j], 60)}`)));
      if (n <= PRINT_VALUES_UP_TO) {
        root.append(svg("text", {x: x + cell / 2, y: y + cell / 2 + 4, "text-anchor": "middle",
          class: "emb-value", fill: value > 0.55 ? "#111" : "#fff", dataset: {i, j}}, value.toFixed(2)));
      }
    }
  }
  return root;
}

/** A colour legend for the heatmap: viridis from 0 to 1. */
function legend() {
  const stops = Array.from({length: 11}, (_, i) => `${viridis(i / 10)} ${i * 10}%`).join(", ");
  return h("div", {class: "emb-legend"}, h("span", {}, "cosine similarity:"), h("span", {class: "mono"}, "0"),
    h("span", {class: "emb-legend-strip", style: `background: linear-gradient(to right, ${stops})`}),
    h("span", {class: "mono"}, "1"), h("span", {class: "muted"}, "(a negative value is drawn as 0)"));
}

/** The 2-D PCA map: one point per sentence, the same scale on both axes so distances compare. */
function scatter(xy, sentences, explained) {
  const width = 520;
  const height = 400;
  const pad = {left: 46, right: 16, top: 16, bottom: 44};
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const xs = xy.map((p) => p[0]);
  const ys = xy.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  // one scale for both axes (PCA distances are real distances); 15% margin for the labels
  const scale = Math.min(plotW / ((x1 - x0) * 1.3 || 1), plotH / ((y1 - y0) * 1.3 || 1));
  const cx = (x0 + x1) / 2;
  const cy = (y0 + y1) / 2;
  const px = (x) => pad.left + plotW / 2 + (x - cx) * scale;
  const py = (y) => pad.top + plotH / 2 - (y - cy) * scale; // y grows upwards
  const pct = (f) => `${Math.round(100 * f)}%`;
  const root = svg("svg", {width, height, class: "emb-scatter", id: "emb-scatter", role: "img",
    "aria-label": "the sentences on their two main directions (PCA)"});
  root.append(
    svg("rect", {x: pad.left, y: pad.top, width: plotW, height: plotH, class: "emb-frame"}),
    svg("text", {x: pad.left + plotW / 2, y: height - 10, "text-anchor": "middle", class: "emb-axis-title"},
      `PC1 (${pct(explained[0])} of variance)`),
    svg("text", {x: 14, y: pad.top + plotH / 2, "text-anchor": "middle", class: "emb-axis-title",
      transform: `rotate(-90 14 ${pad.top + plotH / 2})`}, `PC2 (${pct(explained[1])} of variance)`));
  // the origin (the mean of the sentences), when it is inside the frame
  if (px(0) > pad.left && px(0) < pad.left + plotW) {
    root.append(svg("line", {x1: px(0), x2: px(0), y1: pad.top, y2: pad.top + plotH, class: "emb-zero"}));
  }
  if (py(0) > pad.top && py(0) < pad.top + plotH) {
    root.append(svg("line", {x1: pad.left, x2: pad.left + plotW, y1: py(0), y2: py(0), class: "emb-zero"}));
  }
  xy.forEach(([x, y], i) => {
    root.append(svg("g", {class: "emb-point", dataset: {i}},
      svg("circle", {cx: px(x), cy: py(y), r: 6, class: "point"}),
      // labels go on the side with more room, so they stay inside the frame
      px(x) > pad.left + plotW * 0.6
        ? svg("text", {x: px(x) - 9, y: py(y) + 4, "text-anchor": "end", class: "emb-label"},
          `${snippet(sentences[i])} ${i + 1}`)
        : svg("text", {x: px(x) + 9, y: py(y) + 4, class: "emb-label"}, `${i + 1} ${snippet(sentences[i])}`),
      svg("title", {}, `${i + 1}. ${sentences[i]}\nPC1 ${x.toFixed(3)}, PC2 ${y.toFixed(3)}`)));
  });
  return root;
}

/** The sentences, numbered as on the axes, each with its nearest corpus lines when there are any. */
function sentenceList(answer) {
  return h("ol", {class: "emb-sentences"}, answer.sentences.map((sentence, i) => h("li", {},
    h("span", {}, sentence),
    answer.neighbours ? h("ul", {class: "emb-neighbours"},
      h("li", {class: "muted"}, `nearest lines of ${answer.corpus ?? "the corpus"}:`),
      answer.neighbours[i].map((n) => h("li", {},
        h("span", {class: "mono"}, `${n.score.toFixed(3)} `), h("span", {class: "muted"}, `line ${n.line}: `), n.text)))
      : null)));
}

export async function mount(root, info) {
  const panel = h("div", {class: "emb-panel"});
  root.append(panel);
  const model = info?.embed_model ?? "all-minilm-l6-v2";
  panel.append(h("p", {class: "hint"},
    `A sentence-embedding model (${model}) turns each sentence into one vector. Sentences that mean similar things `,
    "get vectors pointing the same way: their cosine similarity is near 1. Write one sentence per line."));

  const text = h("textarea", {id: "emb-sentences", rows: 7, spellcheck: "false", "aria-label": "sentences, one per line"});
  text.value = state.get("sents", DEFAULT_SENTENCES.join("\n"));
  const button = h("button", {class: "primary", id: "emb-run"}, "Embed");
  const message = h("div");
  const results = h("div", {class: "emb-results"});
  panel.append(h("div", {class: "card"}, text,
    h("div", {class: "row"}, button, h("span", {class: "hint"}, "Ctrl+Enter embeds; at most 64 sentences.")),
    message), results);

  async function run() {
    state.set({sents: text.value});
    message.replaceChildren(h("div", {class: "muted"}, "embedding…"));
    status("embedding…");
    button.disabled = true;
    const started = performance.now();
    try {
      const sentences = text.value.split("\n");
      const answer = await api.post("embeddings", {sentences});
      message.replaceChildren();
      status(`${answer.sentences.length} sentences embedded by ${answer.model} in ` +
        `${Math.round(performance.now() - started)} ms`);
      render(answer);
    } catch (error) {
      status("");
      showError(message, error);
    } finally {
      button.disabled = false;
    }
  }

  function render(answer) {
    results.replaceChildren(
      h("div", {class: "emb-grid"},
        h("section", {class: "card"},
          h("h2", {}, "Cosine similarity of every pair"),
          h("div", {class: "hint"}, `cos(a, b) = a·b / (|a| |b|) of the two ${answer.dim}-number vectors: 1 = same `,
            "direction, 0 = unrelated. Hover a cell for its value."),
          heatmap(answer.cosine, answer.sentences), legend(), sentenceList(answer)),
        h("section", {class: "card"},
          h("h2", {}, "A map of the sentences (PCA)"),
          h("div", {class: "hint"}, `The ${answer.dim}-dimensional vectors seen along the two directions in which `,
            "they differ most; the axes keep only part of the differences (the % of variance), so trust the ",
            "heatmap when the two disagree."),
          scatter(answer.xy, answer.sentences, answer.explained))));
  }

  button.addEventListener("click", run);
  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) run();
  });
  await run();
}
