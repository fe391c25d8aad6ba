"""The explorer's JavaScript helpers (src/lucidlm/explorer/static/lib/), run under Node.

1. the hand-computed unit tests in tests/js/ (``node --test``);
2. sampling.js against the Python reference, ``sampling_probs``, on random logits: the same
   probabilities (to 1e-6) and the same set of surviving tokens;
3. tensor.js's float16 decoding against numpy, for all 65536 bit patterns.

Node runs once per module for 2 and 3 (a module-scoped fixture), each case then compares its part.
Skipped when ``node`` is not on PATH (the explorer itself needs only a browser).
"""

from __future__ import annotations

import base64
import json
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from lucidlm.generate.sampling import SamplingParams, sampling_probs

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "src" / "lucidlm" / "explorer" / "static" / "lib"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not on PATH (apt-get install nodejs)")


def run_node(script: str, tmp: Path, payload: object) -> object:
    """Run an ES module ``script`` with ``payload`` as JSON in a file (argv[2]); return its stdout as JSON."""
    (tmp / "script.mjs").write_text(script)
    (tmp / "input.json").write_text(json.dumps(payload))
    proc = subprocess.run([NODE, str(tmp / "script.mjs"), str(tmp / "input.json")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"node failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)


# ----------------------------------------------------------------------------------------------
# 1. the unit tests


def test_node_unit_tests_pass():
    proc = subprocess.run([NODE, "--test", "tests/js/"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"node --test tests/js/ failed:\n{proc.stdout}\n{proc.stderr}"


# ----------------------------------------------------------------------------------------------
# 2. sampling.js == lucidlm.generate.sampling

SAMPLING_SCRIPT = """
import { readFileSync } from "node:fs";
import { processLogits, mulberry32 } from "%s";

const { cases, seeds } = JSON.parse(readFileSync(process.argv[2], "utf8"));
const probs = cases.map(({ logits, params }) =>
  Array.from(processLogits(logits.map((x) => (x === null ? -Infinity : x)), params)));
const draws = seeds.map((seed) => { const rng = mulberry32(seed); return [rng(), rng(), rng()]; });
console.log(JSON.stringify({ probs, draws }));
"""


def random_cases(n: int) -> list[tuple[list[float], SamplingParams]]:
    """Fixed cases that sit exactly on a boundary in float32 and float64 alike, then ``n`` random
    (logits, params). Logits include ties (copied entries, the top one among them half the time)
    and -inf (banned tokens). At most a quarter of the random cases leave a single token (greedy,
    top_k=1, top_p=0.01, V=1 would otherwise be most of them and test little)."""
    pick = random.Random(0)
    generator = torch.Generator().manual_seed(0)
    cases = [
        ([0.0, 0.0, 0.0, 0.0], SamplingParams(top_p=0.5)),  # mass before token 2 is exactly p: dropped
        ([0.0, -1.0, 0.0], SamplingParams(min_p=1.0)),  # p == min_p * p_max: kept
        ([2.0, 1.0, 1.0, 0.0], SamplingParams(top_k=2)),  # a tie at the k-th place: the lower id stays
        ([1.0, 3.0, 3.0, 2.0], SamplingParams(temperature=0)),  # a tied argmax: the lower id
    ]
    single, random_ones = 0, 0
    while random_ones < n:
        vocab = pick.choice([1, 5, 50, 1000])
        logits = torch.randn(vocab, generator=generator) * pick.choice([0.5, 2.0, 5.0])  # (V,)
        if vocab >= 5:
            for _ in range(vocab // 5):  # ties: copy entries over others
                logits[pick.randrange(vocab)] = logits[pick.randrange(vocab)]
            if pick.random() < 0.5:
                logits[pick.randrange(vocab)] = logits.max()
            banned = pick.sample(range(vocab), pick.randrange(vocab // 3))  # some -inf, never all
            logits[banned] = float("-inf")
        params = SamplingParams(temperature=pick.choice([0, 0.3, 1, 1.7]), top_k=pick.choice([0, 1, 3, 60]),
                                top_p=pick.choice([1, 0.9, 0.5, 0.01]), min_p=pick.choice([0, 0.05, 0.5]))
        if int((sampling_probs(logits, params) > 0).sum()) == 1:
            if single >= n // 4:
                continue
            single += 1
        cases.append((logits.tolist(), params))
        random_ones += 1
    return cases


CASES = random_cases(30)
SEEDS = [0, 1, 42, 2**32 - 1]


def mulberry32_reference(seed: int, n: int) -> list[float]:
    """mulberry32 in Python (32-bit unsigned arithmetic spelled out), to check the JS one."""
    mask = 0xFFFFFFFF
    state, out = seed & mask, []
    for _ in range(n):
        state = (state + 0x6D2B79F5) & mask
        t = ((state ^ (state >> 15)) * (state | 1)) & mask
        t ^= (t + (((t ^ (t >> 7)) * (t | 61)) & mask)) & mask
        out.append(((t ^ (t >> 14)) & mask) / 2**32)
    return out


@pytest.fixture(scope="module")
def js_sampling(tmp_path_factory):
    payload = {
        "cases": [{"logits": [None if x == float("-inf") else x for x in logits],
                   "params": {"temperature": p.temperature, "topK": p.top_k, "topP": p.top_p, "minP": p.min_p}}
                  for logits, p in CASES],
        "seeds": SEEDS,
    }
    return run_node(SAMPLING_SCRIPT % (LIB / "sampling.js").as_uri(), tmp_path_factory.mktemp("sampling"), payload)


@pytest.mark.parametrize("i", range(len(CASES)),
                         ids=[f"V{len(lg)}-T{p.temperature}-k{p.top_k}-p{p.top_p}-m{p.min_p}" for lg, p in CASES])
def test_sampling_js_matches_python(js_sampling, i):
    logits, params = CASES[i]
    want = sampling_probs(torch.tensor(logits), params).double().numpy()  # (V,)
    got = np.array(js_sampling["probs"][i])  # (V,)
    # torch's float32 softmax rounds a probability below ~1e-38 (a logit ~88 under the top one) to 0
    # where JS's float64 keeps it, so "survives" means above float32's smallest normal number.
    tiny = np.finfo(np.float32).tiny
    assert np.flatnonzero(got > tiny).tolist() == np.flatnonzero(want > tiny).tolist(), \
        "different tokens survive the filters"
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_mulberry32_matches_python_reference(js_sampling):
    for seed, draws in zip(SEEDS, js_sampling["draws"]):
        assert draws == mulberry32_reference(seed, 3), f"seed {seed}"


# ----------------------------------------------------------------------------------------------
# 3. float16 decoding == numpy

FLOAT16_SCRIPT = """
import { readFileSync } from "node:fs";
import { decodeTensor } from "%s";

const t = decodeTensor(JSON.parse(readFileSync(process.argv[2], "utf8")));
console.log(JSON.stringify(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString("base64")));
"""


def test_float16_decoding_matches_numpy(tmp_path):
    bits = np.arange(65536, dtype="<u2")  # every half-precision bit pattern
    payload = {"dtype": "float16", "shape": [256, 256], "b64": base64.b64encode(bits.tobytes()).decode()}
    out = run_node(FLOAT16_SCRIPT % (LIB / "tensor.js").as_uri(), tmp_path, payload)
    got = np.frombuffer(base64.b64decode(out), dtype="<f4")  # (65536,)
    want = bits.view("<f2").astype(np.float32)  # (65536,)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan), "NaN patterns must decode to NaN, and only they"
    # bit-exact on the rest, so -0.0 stays -0.0 and every subnormal is exact
    assert np.array_equal(got[~nan].view("<u4"), want[~nan].view("<u4"))
