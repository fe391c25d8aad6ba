""""Copy as Python": the few lines of lucidlm code that compute what a panel shows.

``python_for(panel, params)`` reads the same keys as the page's URL (model, text, layer, head,
temp, ...) and returns a short script that uses only lucidlm's public functions: a student pastes
it into a notebook and gets the numbers of the view, to change and rerun. Each script ends by
printing what it computed; tests/test_explorer_api.py runs every one and compares with the API.
"""

from __future__ import annotations

import json
from pathlib import Path

PANELS = ("tokens", "attention", "walkthrough", "next", "intervene", "compare", "embeddings", "runs", "molecules",
          "alignment")


def _number(value, name: str, kind=int):
    """``value`` parsed as an int (or float): values from a link are parsed, never pasted into the
    code, so a shared link cannot put code into the script."""
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not a {'whole number' if kind is int else 'number'}") from None


def _int(params: dict, key: str, default: int) -> int:
    return _number(params.get(key, default), key, int)


def _float(params: dict, key: str, default: float) -> float:
    return _number(params.get(key, default), key, float)


def _prompt(params: dict, default: str = "The capital of France is") -> tuple[str, str]:
    return params.get("model") or "smollm2-135m-instruct", json.dumps(params.get("text") or default)


def _load_call(model: str, resolve) -> str:
    """``lucidlm.load_model(...)`` for the explorer's model name: what it loads (a path for a
    kept step, a LoRA fine-tune's base with lora="off"), from ``resolve``."""
    where, lora = resolve(model)
    return f"lucidlm.load_model({json.dumps(where)}" + (f", lora={lora!r})" if lora != "merge" else ")")


def _load(model: str, text: str, resolve) -> str:
    return (f"import torch\n"
            f"import lucidlm\n"
            f"from lucidlm.generate.decode import encode_prompt\n"
            f"from lucidlm.inspection import Trace\n\n"
            f"model, tok = {_load_call(model, resolve)}\n"
            f"model.eval()\n"
            f"ids = encode_prompt(tok, {text})  # the ids the model reads\n")


def _edits(text: str) -> list[str]:
    """The page's edits ("zero:head:10:3,scale:mlp:5::0.5") as ``Edit(...)`` source, numbers
    parsed (never pasted)."""
    edits = []
    for item in (text or "").split(","):
        parts = (item.split(":") + [""] * 6)[:6]  # kind:site:layer:head:factor:position
        if not parts[0]:
            continue
        if parts[0] == "patch":
            raise ValueError("copy as Python covers zero and scale edits; a patch needs its source prompt")
        if parts[0] not in ("zero", "scale") or parts[1] not in ("head", "attn", "mlp", "resid"):
            raise ValueError(f"edit {item!r}: expected zero|scale : head|attn|mlp|resid : layer ...")
        args = [repr(parts[0]), repr(parts[1]), str(_number(parts[2] or 0, "layer"))]
        for value, name, kind in ((parts[3], "head", int), (parts[4], "factor", float), (parts[5], "position", int)):
            if value:
                args.append(f"{name}={_number(value, name, kind)!r}")
        edits.append(f"Edit({', '.join(args)})")
    return edits


def _as_is(name: str) -> tuple[str, str]:
    return name, "merge"


def python_for(panel: str, params: dict, resolve=_as_is) -> str:
    """The script for ``panel`` with the view's ``params`` (the URL's keys). ``resolve(name)`` gives
    (what ``load_model`` opens, its lora argument) for a model name (``Workspace.load_source``)."""
    if panel == "tokens":
        text = json.dumps(params.get("ttext") or "Tokenizers don't see letters.")
        names = [n for n in (params.get("toks") or "cl100k_base").split(",") if n][:8]  # shown with repr()
        return ("from lucidlm.tokenizers import load_tokenizer\n\n"
                f"text = {text}\n"
                f"for name in {names!r}:\n"
                "    tok = load_tokenizer(name)  # a registered name or a tokenizer file\n"
                "    ids = tok.encode(text)\n"
                "    print(name, len(ids), 'tokens:', ids)\n")
    if panel == "attention":
        model, text = _prompt(params)
        layer, head = _int(params, "layer", 0), _int(params, "head", 0)
        return (_load(model, text, resolve)
                + "trace = Trace(keep=['attn.weights'])  # record only the attention weights\n"
                "with torch.inference_mode():\n"
                "    model(torch.tensor([ids]), trace=trace)\n"
                f"weights = trace['layers.{layer}.attn.weights'][0, {head}]  # (T, T): row = query, column = key\n"
                "print(weights)\n")
    if panel == "walkthrough":
        model, text = _prompt(params, "The cat sat on the")
        layer = _int(params, "wlayer", 0)
        return (_load(model, text, resolve)
                + "trace = Trace()  # every stage\n"
                "with torch.inference_mode():\n"
                "    model(torch.tensor([ids]), trace=trace)\n"
                f"for name in trace.names('layers.{layer}.'):\n"
                "    print(f'{name:32} {tuple(trace[name].shape)}')\n")
    if panel == "next":
        model, text = _prompt(params)
        temp, topk = _float(params, "temp", 1.0), _int(params, "topk", 0)
        topp, minp = _float(params, "topp", 1.0), _float(params, "minp", 0.0)
        return (_load(model, text, resolve)
                + "from lucidlm.generate.sampling import SamplingParams, sampling_probs\n\n"
                "with torch.inference_mode():\n"
                "    logits = model(torch.tensor([ids]))[0, -1]  # (V,) scores of the next token\n"
                f"params = SamplingParams(temperature={temp}, top_k={topk}, top_p={topp}, min_p={minp})\n"
                "probs = sampling_probs(logits, params)  # what sampling draws from\n"
                "best = torch.topk(probs, 10)\n"
                "for p, i in zip(best.values.tolist(), best.indices.tolist()):\n"
                "    print(f'{p:7.2%}  {tok.decode([i])!r}')\n")
    if panel == "intervene":
        model, text = _prompt(params)
        edits = _edits(params.get("edits"))
        return (_load(model, text, resolve)
                + "from lucidlm.inspection.interventions import Edit, build_edits, next_token_logits\n\n"
                f"edits = build_edits(model, ids, [{', '.join(edits)}])\n"
                "plain = torch.softmax(next_token_logits(model, ids), -1)\n"
                "edited = torch.softmax(next_token_logits(model, ids, edits), -1)\n"
                "answer = int(plain.argmax())\n"
                "print(f'{tok.decode([answer])!r}: {plain[answer]:.2%} -> {edited[answer]:.2%}')\n")
    if panel == "compare":
        defaults = {"a": "The capital of France is", "b": "The capital of Italy is"}
        runs = []
        for side in "ab":
            model = params.get(f"{side}model") or "smollm2-135m-instruct"
            text = json.dumps(params.get(f"{side}text") or defaults[side])
            edits = _edits(params.get(f"{side}edit"))
            where, lora = resolve(model)
            runs.append(f"weights_{side}, logits_{side} = run({json.dumps(where)}, {text}, [{', '.join(edits)}]"
                        + (f", lora={lora!r})\n" if lora != "merge" else ")\n"))
        return ("import torch\n"
                "import lucidlm\n"
                "from lucidlm.generate.decode import encode_prompt\n"
                "from lucidlm.inspection import Trace\n"
                "from lucidlm.inspection.interventions import Edit, build_edits\n\n\n"
                "def run(model_name, text, edits, lora='merge'):\n"
                "    \"\"\"Every head's attention weights (L, nh, T, T) and the next-token logits (V,).\"\"\"\n"
                "    model, tok = lucidlm.load_model(model_name, lora=lora)\n"
                "    model.eval()\n"
                "    ids = encode_prompt(tok, text)\n"
                "    trace = Trace(keep=['attn.weights'], edits=build_edits(model, ids, edits) if edits else None)\n"
                "    with torch.inference_mode():\n"
                "        logits = model(torch.tensor([ids]), trace=trace)[0, -1]\n"
                "    return torch.stack([trace[f'layers.{i}.attn.weights'][0] for i in range(len(model.layers))]), logits\n\n\n"
                + "".join(runs) +
                "T = min(weights_a.shape[-1], weights_b.shape[-1])  # the positions both prompts have\n"
                "diff = (weights_a[..., :T, :T] - weights_b[..., :T, :T]).abs().mean((-1, -2))  # (L, nh) mean |dA|\n"
                "log_a, log_b = logits_a.log_softmax(-1), logits_b.log_softmax(-1)\n"
                "kl = float((log_a.exp() * (log_a - log_b)).sum())  # KL(A || B) of the next token, in nats\n"
                "print('mean |dA| per head:', diff)\n"
                "print(f'KL(A || B) = {kl:.4f} nats')\n")
    if panel == "runs":
        if not params.get("run_dir"):
            raise ValueError("choose a run first")
        metrics = json.dumps(str(Path(params["run_dir"]) / "metrics.jsonl"))
        code = ("from lucidlm.train.metrics import read_metrics\n\n"
                f"records = read_metrics({metrics})\n"
                "for split in ('train', 'val'):\n"
                "    curve = [(r['step'], r['loss']) for r in records if r.get('split') == split and 'loss' in r]\n"
                "    print(split, 'loss by step:', curve)\n")
        if params.get("model"):  # Watch it learn: the same prompt continued by one kept model
            prompt = json.dumps(params.get("lprompt") or "ROMEO:\n")
            temp = _float(params, "ltemp", 0.8)
            code += ("\nimport lucidlm\n"
                     "from lucidlm.generate.decode import encode_prompt, generate\n"
                     "from lucidlm.generate.sampling import SamplingParams\n\n"
                     f"model, tok = {_load_call(params['model'], resolve)}  # the model the run kept at this step\n"
                     "model.eval()\n"
                     f"ids = encode_prompt(tok, {prompt})\n"
                     "room = model.cfg.max_seq_len - len(ids)  # a small model's context ends the sample\n"
                     f"out = generate(model, tok, ids, max_tokens=min(120, room), params=SamplingParams(temperature={temp}, "
                     "seed=0), truncate=True)\n"
                     "print(out.text)\n")
        return code
    if panel == "embeddings":
        sentences = [s for s in (params.get("sents") or "A cat sat.\nStocks fell.").splitlines() if s.strip()][:64]
        return ("import lucidlm\n\n"
                f"sentences = {json.dumps(sentences, ensure_ascii=False)}\n"
                "e = lucidlm.embed(sentences)  # (N, 384) unit vectors (all-MiniLM-L6-v2)\n"
                "cosine = e @ e.T  # (N, N) cosine similarities\n"
                "print(cosine)\n")
    if panel == "molecules":
        if not params.get("model"):
            raise ValueError("choose a molecule model first")
        n, temp, topk = _int(params, "n", 12), _float(params, "temp", 1.0), _int(params, "topk", 0)
        topp, seed = _float(params, "topp", 1.0), _int(params, "seed", 0)
        return ("from lucidlm.chem.features import canonical\n"
                "from lucidlm.chem.sample import load_molecule_model, sample_molecules\n"
                "from lucidlm.generate.sampling import SamplingParams\n\n"
                f"model, tok = load_molecule_model({json.dumps(resolve(params['model'])[0])})\n"
                f"params = SamplingParams(temperature={temp}, top_k={topk}, top_p={topp}, seed={seed})\n"
                f"molecules = sample_molecules(model, tok, {n}, params=params, batch_size={n}, progress=False)\n"
                "for m in molecules:\n"
                "    print('valid  ' if canonical(m.smiles) else 'INVALID', m.smiles)\n")
    if panel == "alignment":
        if not params.get("model"):
            raise ValueError("choose a seq2seq model first")
        beam = _int(params, "beam", 1)
        return ("from lucidlm.inspection.seq2seq_attention import cross_attention, plot_alignment\n"
                "from lucidlm.train.seq2seq import load_seq2seq\n\n"
                f"model, task, vocab, _ = load_seq2seq({json.dumps(resolve(params['model'])[0])})\n"
                f"a = cross_attention(model, vocab, {json.dumps(params.get('text') or '')}, beam={beam})\n"
                "weights = a.weights  # (blocks, heads, output + <eos>, source + <eos>); each row sums to 1\n"
                "# plot_alignment(a, 'alignment.png')  # the same heatmaps as a PNG\n"
                "print(a.output)\n"
                "print(weights.mean(1))  # each block's mean over its heads\n")
    raise ValueError(f"no Python for the {panel!r} panel; it has: {', '.join(PANELS)}")
