"""The derived cache (``lucidlm/derived_cache.py``): what a GGUF load keeps for the next one.

- the cached float32 weights equal a fresh dequantisation bit for bit, and the cached tokenizer
  the one built from the header (same vocab, merges, metadata; same ids, special tokens included);
- the second load really reads the cache (the reference path is made to fail);
- a truncated, empty, foreign or stale cache file is never used: it is derived again;
- a cache that cannot be written still loads (dequantising each time), and
  ``LUCIDLM_NO_DERIVED_CACHE=1`` writes nothing;
- a model loaded from the cache owns its weights: changing them in place leaves the file as it was.

Every test works in a temporary ``LUCIDLM_HOME`` (the asset itself is found before it is set).
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import pytest
import torch

from lucidlm.files import derived_cache
from lucidlm.loading import gguf as gguf_loading
from lucidlm.loading.gguf import load_gguf, read_gguf, state_shapes
from lucidlm.loading.weights_cache import WEIGHTS_FILE, load_cached_weights
from lucidlm.tokenizers import gguf_vocab
from lucidlm.tokenizers.gguf_vocab import VOCAB_FILE, from_gguf

gguf = pytest.importorskip("gguf")

SAMPLE = ("<|im_start|>user\nWhat is 12345 + 678? Café, naïve, 東京!<|im_end|>\n<|im_start|>assistant\n"
          "  def f(x):\n\treturn x**2<|endoftext|>")


@pytest.fixture(scope="module")
def module_home(tmp_path_factory, smollm2_path):
    """One temporary home for the SmolLM2 tests: its cache (540 MB) is built once per module."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LUCIDLM_HOME", str(home))
        mp.delenv("LUCIDLM_NO_DERIVED_CACHE", raising=False)
        yield home


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LUCIDLM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LUCIDLM_NO_DERIVED_CACHE", raising=False)
    return tmp_path / "home"


# ----------------------------------------------------------------------------------------------
# SmolLM2: the cache gives exactly what the reference gives


def test_cached_weights_equal_a_fresh_dequantisation(module_home, smollm2_path, monkeypatch):
    cfg, ref = read_gguf(smollm2_path, cache=False)  # the reference: header + dequantisation
    assert state_shapes(cfg) == {k: tuple(t.shape) for k, t in ref.items()}
    assert not (derived_cache.entry_dir(smollm2_path) / WEIGHTS_FILE).exists()
    read_gguf(smollm2_path)  # the first load with the cache on: dequantises and writes the file

    def fail(*args, **kwargs):
        raise AssertionError("the second load dequantised instead of reading the cache")

    monkeypatch.setattr(gguf_loading, "state_from_gguf", fail)
    cached_cfg, cached = read_gguf(smollm2_path)
    assert cached_cfg == cfg and cached_cfg.extra == cfg.extra and cached_cfg.name == cfg.name
    assert sorted(cached) == sorted(ref)
    for name, tensor in ref.items():
        assert cached[name].dtype == torch.float32 and cached[name].shape == tensor.shape, name
        assert torch.equal(cached[name], tensor), name  # bit for bit


def test_cached_tokenizer_equals_the_one_built_from_the_header(module_home, smollm2_path, monkeypatch):
    ref = from_gguf(smollm2_path, cache=False)
    from_gguf(smollm2_path)  # builds the cache
    monkeypatch.setattr(gguf_vocab, "read_vocab", lambda path: pytest.fail("the header was read again"))
    tok = from_gguf(smollm2_path)
    assert (tok.vocab, tok.merges, tok.special_tokens) == (ref.vocab, ref.merges, ref.special_tokens)
    assert (tok.pattern, tok.ignore_merges, tok.allow_missing_bytes, tok.name) == (
        ref.pattern, ref.ignore_merges, ref.allow_missing_bytes, ref.name)
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.unk_id, tok.add_bos, tok.add_eos) == (
        ref.bos_id, ref.eos_id, ref.pad_id, ref.unk_id, ref.add_bos, ref.add_eos)
    assert tok.chat_template == ref.chat_template and tok.metadata == ref.metadata
    assert tok.metadata["gguf"]["tokenizer.ggml.token_type"][0] == "control"  # int keys, as built
    ids = tok.encode(SAMPLE, allowed_special="all")
    assert ids == ref.encode(SAMPLE, allowed_special="all")
    assert tok.special_tokens["<|im_start|>"] in ids and tok.decode(ids) == SAMPLE


def test_model_from_the_cache_owns_its_weights(module_home, smollm2_path):
    """The cached tensors map the file copy-on-write: training changes the model, not the file."""
    read_gguf(smollm2_path)  # make sure the cache exists
    model = load_gguf(smollm2_path)
    weight = model.layers[0].mlp.proj.weight
    before = weight.detach().clone()
    with torch.no_grad():
        weight.add_(1.0)
    _, again = load_cached_weights(smollm2_path)
    assert torch.equal(again["layers.0.mlp.proj.weight"], before)


# ----------------------------------------------------------------------------------------------
# a tiny GGUF: broken, stale and unwritable caches


SHAPES = {"token_embd.weight": (258, 32), "output_norm.weight": (32,), "blk.0.attn_norm.weight": (32,),
          "blk.0.ffn_norm.weight": (32,), "blk.0.attn_q.weight": (32, 32), "blk.0.attn_k.weight": (16, 32),
          "blk.0.attn_v.weight": (16, 32), "blk.0.attn_output.weight": (32, 32), "blk.0.ffn_gate.weight": (48, 32),
          "blk.0.ffn_up.weight": (48, 32), "blk.0.ffn_down.weight": (32, 48)}


def write_tiny_llama(path, seed: int = 0):
    """One Llama block (C=32, 4 heads, 2 kv heads, hidden 48), random float32 weights, a tokenizer
    of the 256 bytes plus one merge and one control token."""
    from lucidlm.tokenizers.hf import bytes_to_token

    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), "llama")
    for add, value in ((w.add_block_count, 1), (w.add_context_length, 64), (w.add_embedding_length, 32),
                       (w.add_feed_forward_length, 48), (w.add_head_count, 4), (w.add_head_count_kv, 2),
                       (w.add_layer_norm_rms_eps, 1e-5)):
        add(value)
    tokens = [bytes_to_token(bytes([b])) for b in range(256)] + ["ab", "<|end|>"]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types([1] * 257 + [3])
    w.add_token_merges(["a b"])
    w.add_eos_token_id(257)
    for name, shape in SHAPES.items():
        w.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def corrupt(path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(os.urandom(len(data)))
    elif how == "other format":  # readable, but not what it claims to be
        path.write_bytes(data.replace(b"lucidlm-gguf-", b"lucidlm-gguX-"))


@pytest.mark.parametrize("how", ["truncated", "empty", "garbage", "other format"])
def test_corrupt_cache_is_derived_again(home, tmp_path, how):
    gguf_path = write_tiny_llama(tmp_path / "tiny.gguf")
    cfg, ref = read_gguf(gguf_path, cache=False)
    ref_tok = from_gguf(gguf_path, cache=False)
    read_gguf(gguf_path), from_gguf(gguf_path)  # write both cache files
    folder = derived_cache.entry_dir(gguf_path)
    for name in (WEIGHTS_FILE, VOCAB_FILE):
        corrupt(folder / name, how)
    assert load_cached_weights(gguf_path) is None and gguf_vocab.load_cached_vocab(gguf_path) is None
    _, state = read_gguf(gguf_path)
    assert all(torch.equal(state[k], ref[k]) for k in ref)
    assert from_gguf(gguf_path).vocab == ref_tok.vocab
    assert load_cached_weights(gguf_path) is not None  # and the broken files were replaced
    assert gguf_vocab.load_cached_vocab(gguf_path) is not None


def test_stale_cache_is_not_used(home, tmp_path):
    """Another file copied over the GGUF with the same size and modification time (``cp -p``)."""
    gguf_path = write_tiny_llama(tmp_path / "tiny.gguf", seed=0)
    read_gguf(gguf_path), from_gguf(gguf_path)
    st = gguf_path.stat()
    time.sleep(0.05)  # the change time has a coarse clock (a few ms)
    other = write_tiny_llama(tmp_path / "other.gguf", seed=1)
    gguf_path.write_bytes(other.read_bytes())
    os.utime(gguf_path, ns=(st.st_atime_ns, st.st_mtime_ns))
    now = gguf_path.stat()
    assert (now.st_size, now.st_mtime_ns) == (st.st_size, st.st_mtime_ns) and now.st_ctime_ns != st.st_ctime_ns
    _, state = read_gguf(gguf_path)
    _, expected = read_gguf(other, cache=False)
    assert all(torch.equal(state[k], expected[k]) for k in expected)
    assert from_gguf(gguf_path).vocab == from_gguf(other, cache=False).vocab


def test_a_cache_that_cannot_be_written_still_loads(home, tmp_path, caplog):
    gguf_path = write_tiny_llama(tmp_path / "tiny.gguf")
    home.mkdir(parents=True)
    (home / "derived").write_text("a file where the cache directory should be")  # read-only, even for root
    with caplog.at_level(logging.WARNING, logger="lucidlm.files.derived_cache"):
        _, state = read_gguf(gguf_path)
        tok = from_gguf(gguf_path)
    _, ref = read_gguf(gguf_path, cache=False)
    assert all(torch.equal(state[k], ref[k]) for k in ref) and tok.eos_id == 257
    assert "cannot cache" in caplog.text
    assert not any(tmp_path.rglob("*.tmp"))


def test_cache_can_be_turned_off(home, tmp_path, monkeypatch):
    monkeypatch.setenv("LUCIDLM_NO_DERIVED_CACHE", "1")
    gguf_path = write_tiny_llama(tmp_path / "tiny.gguf")
    load_gguf(gguf_path), from_gguf(gguf_path)
    assert not (home / "derived").exists()


def test_entries_whose_source_is_gone_are_deleted(home, tmp_path):
    first, second = write_tiny_llama(tmp_path / "a.gguf"), write_tiny_llama(tmp_path / "b.gguf")
    read_gguf(first)
    assert derived_cache.entry_dir(first).is_dir()
    first.unlink()
    read_gguf(second)  # a new entry: the cache tidies itself
    assert not derived_cache.entry_dir(first).exists() and derived_cache.entry_dir(second).is_dir()
