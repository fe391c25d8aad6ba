"""The Explorer's Molecules panel: a real (tiny) SMILES GPT trained here on MOSES molecules for a
few seconds, sampled through POST /api/molecules and in the page (Debian's chromium via Playwright).

References, each independent of the code under test: RDKit itself (validity, canonical form), the
model's plain forward pass over one molecule at a time (each token's probability), and
``lucidlm.chem.sample.sample_molecules`` called directly with the same seed (the same molecules).
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi")
Chem = pytest.importorskip("rdkit.Chem")
from fastapi.testclient import TestClient  # noqa: E402

from browser import ConsoleLog, RequestLog, chromium, serve_app, skip_without_browser  # noqa: E402
from lucidlm.explorer.app import create_app  # noqa: E402
from lucidlm.explorer.workspace import Workspace  # noqa: E402

ARTIFACTS = Path(os.environ.get("LUCIDLM_ARTIFACTS", "test-artifacts/explorer"))


@pytest.fixture(scope="module")
def chem_model(tmp_path_factory, moses_path) -> str:
    """A 2-layer GPT trained for seconds on 48 MOSES molecules (400 steps: at 200 its greedy molecule
    was valid on one CPU and not on another): sampled at temperature 1 it writes
    mostly invalid strings, greedily the molecule it learned best (valid), so both kinds of card show."""
    from lucidlm.chem.data import prepare_smiles
    from lucidlm.chem.files import read_smiles
    from lucidlm.train import TrainConfig, train

    root = tmp_path_factory.mktemp("mol")
    smiles = read_smiles(moses_path, limit=56)
    prepare_smiles(root / "data", smiles[:48], val=smiles[48:], progress=False)
    train(TrainConfig(data=str(root / "data"), out_dir=str(root / "run"), max_steps=400, batch_size=16,
                      block_size=55, lr=1e-2, min_lr=1e-3, warmup_steps=5, eval_interval=200, eval_iters=1, progress=False,
                      log_interval=50, model={"n_layer": 2, "n_head": 2, "n_embd": 64, "max_seq_len": 64}))
    return str(root / "run" / "last")


@pytest.fixture(scope="module")
def ws(chem_model):
    return Workspace([chem_model], runs=[], max_tokens=64)


@pytest.fixture(scope="module")
def client(ws):
    return TestClient(create_app(ws))


def test_molecules_are_what_the_model_writes_with_their_token_probabilities(chem_model, ws, client):
    from lucidlm.chem.sample import sample_molecules
    from lucidlm.generate.sampling import SamplingParams

    info = client.get("/api/info").json()
    assert info["models"][0].get("molecules") is True
    r = client.post("/api/molecules", json={"model": chem_model, "n": 16, "temperature": 1.0, "seed": 3})
    assert r.status_code == 200, r.text
    answer = r.json()
    model, tok = ws.model(chem_model)
    direct = sample_molecules(model, tok, 16, params=SamplingParams(seed=3), batch_size=16, progress=False)
    assert [m["smiles"] for m in answer["molecules"]] == [m.smiles for m in direct]  # same seed, same molecules

    for m in answer["molecules"]:
        mol = Chem.MolFromSmiles(m["smiles"]) if m["smiles"] else None
        assert m["valid"] == (mol is not None)
        assert m["canonical"] == (Chem.MolToSmiles(mol) if mol is not None else None)
        assert (m["svg"] or "").startswith("<?xml") == m["valid"]
        ids = [t["id"] for t in m["tokens"]]
        text = "".join(t["text"] for t in m["tokens"] if t["id"] != tok.eos_id)
        assert text == m["smiles"]
        # each token's probability: the model's softmax after <bos> and the tokens before it, one molecule at a time
        with torch.inference_mode():
            probs = torch.softmax(model(torch.tensor([[tok.bos_id, *ids[:-1]]]))[0].float(), -1)  # (T, V)
        want = [probs[t, i].item() for t, i in enumerate(ids)]
        assert [t["p"] for t in m["tokens"]] == pytest.approx(want, rel=1e-4, abs=1e-6)
    assert answer["valid"] == sum(m["valid"] for m in answer["molecules"])
    assert answer["unique"] == len({m["canonical"] for m in answer["molecules"] if m["valid"]})

    # greedy: the molecule the model learned best, valid, drawn; its canonical form is RDKit's
    greedy = client.post("/api/molecules", json={"model": chem_model, "n": 2, "temperature": 0}).json()
    for m in greedy["molecules"]:
        assert m["valid"] and m["svg"].startswith("<?xml") and "<script" not in m["svg"]
        assert m["canonical"] == Chem.MolToSmiles(Chem.MolFromSmiles(m["smiles"]))
    assert greedy["valid"] == 2 and greedy["unique"] == 1


def test_bad_requests_say_what_is_wrong(chem_model, client, capsys):
    r = client.post("/api/molecules", json={"model": chem_model, "n": 65})
    assert r.status_code == 400 and "n" in r.json()["error"]["message"]
    r = client.post("/api/molecules", json={"model": "smollm2-135m-instruct", "n": 2})
    assert r.status_code == 404 and "unknown model" in r.json()["error"]["message"]
    r = client.post("/api/molecules", json={"model": chem_model, "n": 2, "temperature": -1})
    assert r.status_code == 400


def test_a_language_model_is_not_a_molecule_model():
    from lucidlm.explorer.molecules import check_molecule_model
    from lucidlm.models.config import ModelConfig
    from lucidlm.models.transformer import build_model
    from lucidlm.tokenizers import CharTokenizer

    model = build_model(ModelConfig(vocab_size=3, n_layer=1, n_head=1, n_embd=8, max_seq_len=8))
    with pytest.raises(ValueError, match="not a molecule model"):
        check_molecule_model(model, CharTokenizer.from_text("abc"), "some-gpt")


def test_copy_as_python_samples_the_same_molecules(chem_model, client, capsys):
    r = client.get("/api/python", params={"panel": "molecules", "model": chem_model, "n": 8, "seed": 5})
    assert r.status_code == 200, r.text
    namespace: dict = {}
    exec(compile(r.json()["code"], "<molecules>", "exec"), namespace)  # noqa: S102 - our own server's code
    capsys.readouterr()
    answer = client.post("/api/molecules", json={"model": chem_model, "n": 8, "seed": 5}).json()
    assert [m.smiles for m in namespace["molecules"]] == [m["smiles"] for m in answer["molecules"]]


def test_the_panel_draws_each_molecule_and_colours_its_tokens(chem_model, ws, client):
    skip_without_browser()
    want = client.post("/api/molecules", json={"model": chem_model, "n": 12, "seed": 0}).json()
    with serve_app(create_app(ws)) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        requests, console = RequestLog(page), ConsoleLog(page)
        page.goto(f"{url}/?" + urllib.parse.urlencode({"panel": "molecules"}))
        page.wait_for_selector(".mol-grid[data-count='12']", timeout=60_000)
        cards = page.eval_on_selector_all(".mol-card", "cs => cs.map((c) => [c.dataset.smiles, c.dataset.valid])")
        assert cards == [[m["smiles"], str(m["valid"]).lower()] for m in want["molecules"]]
        assert page.locator(".mol-card.invalid .mol-invalid").count() == 12 - want["valid"]
        first = [float(p) for p in page.eval_on_selector_all(".mol-card:first-child .mol-token",
                                                              "ts => ts.map((t) => t.dataset.p)")]
        assert first == pytest.approx([t["p"] for t in want["molecules"][0]["tokens"]])
        summary = page.inner_text(".mol-summary")
        assert summary.startswith(f"12 molecules: {want['valid']} valid")
        # greedy: every card the same valid molecule, drawn
        page.fill("#mol-temp", "0")
        page.fill("#mol-n", "4")
        page.click("#mol-run")
        page.wait_for_selector(".mol-grid[data-count='4']", timeout=30_000)
        page.wait_for_function("[...document.querySelectorAll('.mol-card img.mol-drawing')].length === 4 && "
                               "[...document.querySelectorAll('.mol-card img.mol-drawing')].every((i) => i.complete)")
        drawn = page.eval_on_selector_all(".mol-card img.mol-drawing", "is => is.map((i) => i.naturalWidth)")
        assert drawn == [220] * 4  # each valid molecule's SVG decoded, at its size
        assert "temp=0" in page.url and "n=4" in page.url
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "molecules.png"))
        assert requests.outside_loopback() == [] and console.errors == []
