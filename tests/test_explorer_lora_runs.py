"""The Explorer on a LoRA fine-tune and its training runs: the fine-tune served beside its base
("NAME (LoRA off)"), the two compared, and "copy as Python" for the Compare and Training runs
panels, whose code is run here and checked against the API's own answers.

The models are real and tiny: a 2-layer character-level GPT trained for a few steps, then a LoRA
fine-tune of it on other text. The base's weights are the independent reference for "LoRA off";
the merged fine-tune is checked against W + (alpha / rank) * B @ A computed here by hand.
"""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from lucidlm.explorer.app import create_app  # noqa: E402
from lucidlm.explorer.workspace import LORA_OFF, Workspace  # noqa: E402
from lucidlm.loading.checkpoint import has_lora_adapters, read_safetensors  # noqa: E402
from lucidlm.loading.load import load_model  # noqa: E402

PROMPT = "ROMEO:\n"
RANK, ALPHA = 4, 8.0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """runs/base: 40 steps on one text (kept at 0, 20, 40); runs/ft: 30 LoRA steps on another."""
    from lucidlm.data import prepare_dataset
    from lucidlm.train import TrainConfig, train
    from lucidlm.train.instruct import finetune

    root = tmp_path_factory.mktemp("lora")
    line_b = "ROMEO:\nAll the world's a stage, and all the men and women merely players.\n"
    (root / "a.txt").write_text("ROMEO:\nTo be or not to be, that is the question.\n" * 200 + line_b * 5)
    (root / "b.txt").write_text(line_b * 200)
    small = {"batch_size": 8, "block_size": 32, "warmup_steps": 2, "eval_iters": 1, "progress": False,
             "log_interval": 10}
    prepare_dataset(str(root / "a.txt"), root / "data_a", tokenizer="char")
    train(TrainConfig(data=str(root / "data_a"), out_dir=str(root / "runs" / "base"), max_steps=40, keep_every=20,
                      lr=1e-2, eval_interval=20, model={"n_layer": 2, "n_head": 2, "n_embd": 32, "max_seq_len": 160},
                      **small))
    # the fine-tune's data is encoded with the base's own tokenizer (b.txt's characters are all in a.txt)
    prepare_dataset(str(root / "b.txt"), root / "data_b", tokenizer=str(root / "runs" / "base" / "last" / "tokenizer.json"))
    finetune(TrainConfig(data=str(root / "data_b"), out_dir=str(root / "runs" / "ft"), max_steps=30,
                         init_from=str(root / "runs" / "base" / "last"), lr=2e-2, eval_interval=30,
                         lora={"rank": RANK, "alpha": ALPHA, "targets": ["qkv", "proj"]}, **small))
    return root / "runs"


@pytest.fixture(scope="module")
def ws(runs):
    return Workspace([str(runs / "ft" / "last"), str(runs / "base" / "last")], runs=[str(runs)], tokenizers=(),
                     max_tokens=128)


@pytest.fixture(scope="module")
def client(ws):
    return TestClient(create_app(ws))


def tensor(obj: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(obj["b64"]), dtype=obj["dtype"]).reshape(obj["shape"])


def python_of(client, capsys, **query) -> dict:
    r = client.get("/api/python", params=query)
    assert r.status_code == 200, r.text
    namespace: dict = {}
    exec(compile(r.json()["code"], f"<{query['panel']}>", "exec"), namespace)  # noqa: S102 - our own code
    capsys.readouterr()
    return namespace


def test_a_lora_fine_tune_is_served_beside_its_base(runs, ws, client):
    ft, base = str(runs / "ft" / "last"), str(runs / "base" / "last")
    assert has_lora_adapters(ft) and not has_lora_adapters(base)
    names = [m["name"] for m in client.get("/api/info").json()["models"]]
    assert names == [ft, ft + LORA_OFF, base]  # the base right under its fine-tune; a plain checkpoint once

    # LoRA off is exactly the model the fine-tune started from: the same logits as the base
    a = client.post("/api/trace", json={"model": ft + LORA_OFF, "text": PROMPT}).json()
    b = client.post("/api/trace", json={"model": base, "text": PROMPT}).json()
    assert np.array_equal(tensor(a["next"]["logits"]), tensor(b["next"]["logits"]))

    # LoRA on: every adapted Linear is W + (alpha / rank) * B @ A, computed here from the file
    tensors, _ = read_safetensors(runs / "ft" / "last" / "model.safetensors")
    merged, _ = ws.model(ft)
    adapted = sorted(n[: -len(".lora_A")] for n in tensors if n.endswith(".lora_A"))
    assert adapted, "the fine-tune wrote no adapters"
    for name in adapted:
        want = tensors[f"{name}.weight"] + (ALPHA / RANK) * tensors[f"{name}.lora_B"] @ tensors[f"{name}.lora_A"]
        torch.testing.assert_close(merged.get_submodule(name).weight.detach(), want, rtol=1e-5, atol=1e-6)

    # compared: the heads differ, the next token's distribution moved (KL > 0)
    on = client.post("/api/trace", json={"model": ft, "text": PROMPT}).json()
    cmp = client.post("/api/compare", json={"a": on["trace"], "b": a["trace"]}).json()
    assert tensor(cmp["attention"]).max() > 0 and cmp["next"]["kl"] > 0

    # loading a plain checkpoint with lora="off" is a mistake, said so
    with pytest.raises(ValueError, match="no LoRA adapters"):
        load_model(base, lora="off")


def test_interventions_leave_the_lora_models_as_they_were(runs, client):
    ft = str(runs / "ft" / "last")
    before = tensor(client.post("/api/trace", json={"model": ft + LORA_OFF, "text": PROMPT}).json()["next"]["logits"])
    edited = client.post("/api/trace", json={"model": ft + LORA_OFF, "text": PROMPT,
                                             "edits": [{"kind": "zero", "site": "head", "layer": 1, "head": 0}]}).json()
    assert not np.array_equal(tensor(edited["next"]["logits"]), before)
    again = client.post("/api/trace", json={"model": ft + LORA_OFF, "text": PROMPT + " "}).json()  # a fresh pass
    plain = client.post("/api/trace", json={"model": ft + LORA_OFF, "text": PROMPT}).json()
    assert np.array_equal(tensor(plain["next"]["logits"]), before) and again["trace"] != plain["trace"]


def test_copy_as_python_for_compare_gives_the_panels_numbers(runs, client, capsys):
    ft = str(runs / "ft" / "last")
    a = client.post("/api/trace", json={"model": ft, "text": PROMPT}).json()
    edit = {"kind": "zero", "site": "head", "layer": 1, "head": 1}
    b = client.post("/api/trace", json={"model": ft + LORA_OFF, "text": "ROMEO: To", "edits": [edit]}).json()
    cmp = client.post("/api/compare", json={"a": a["trace"], "b": b["trace"]}).json()
    ns = python_of(client, capsys, panel="compare", amodel=ft, atext=PROMPT, bmodel=ft + LORA_OFF,
                   btext="ROMEO: To", bedit="zero:head:1:1")
    assert "lora='off'" in client.get("/api/python", params={"panel": "compare", "amodel": ft, "bmodel": ft + LORA_OFF}).json()["code"]
    # the API keeps the weights in float16: equal to that rounding
    np.testing.assert_allclose(ns["diff"].numpy(), tensor(cmp["attention"]), atol=2e-3)
    assert ns["kl"] == pytest.approx(cmp["next"]["kl"], rel=1e-4, abs=1e-6)


def test_copy_as_python_for_a_run_gives_its_curve_and_a_kept_steps_sample(runs, client, capsys):
    from lucidlm.train.metrics import read_metrics

    ns = python_of(client, capsys, panel="runs", run="runs/base")
    want = [(r["step"], r["loss"]) for r in read_metrics(runs / "base" / "metrics.jsonl") if r.get("split") == "val"]
    assert ns["curve"] == want and want  # the loop's last split: val
    sample = client.post("/api/runs/sample", json={"run": "runs/base", "step": 20, "text": PROMPT, "temperature": 0.7,
                                                   "max_tokens": 120}).json()
    ns = python_of(client, capsys, panel="runs", run="runs/base", lstep=20, lprompt=PROMPT, ltemp=0.7)
    assert ns["out"].text == sample["text"]
    # only the runs this explorer found; a step the run did not keep is unknown
    assert client.get("/api/python", params={"panel": "runs", "run": "../etc"}).status_code == 404
    assert client.get("/api/python", params={"panel": "runs", "run": "runs/base", "lstep": 7}).status_code == 404
    code = client.get("/api/python", params={"panel": "runs", "run": "runs/base", "run_dir": "/etc"}).json()["code"]
    assert "/etc/metrics.jsonl" not in code  # the run's folder comes from its name, never from the link
