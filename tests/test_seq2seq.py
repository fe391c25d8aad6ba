"""The encoder-decoder trained end to end: tasks, masks, loss, schedule, cache, beam search, CLI."""

from __future__ import annotations

import itertools
import math
import random
import re
from datetime import datetime

import pytest
import torch
import torch.nn.functional as F

from lucidlm.cli import main
from lucidlm.data.seq2seq_tasks import (
    BOS,
    EOS,
    PAD,
    TASKS,
    Example,
    TrainSampler,
    Vocab,
    encode_batch,
    get_task,
    make_splits,
    task_from_dict,
    to_roman,
)
from lucidlm.generate.seq2seq_decode import beam_search, greedy_decode, length_penalty, next_logprobs
from lucidlm.models import ModelConfig, build_model
from lucidlm.nn.attention import KVCache
from lucidlm.train.schedule import inverse_sqrt_lr, noam_lr
from lucidlm.train.seq2seq import (
    Seq2SeqConfig,
    exact_match,
    label_smoothed_loss,
    load_seq2seq,
    save_seq2seq,
    train_seq2seq,
)


def _tiny(vocab_size: int, norm: str = "pre", seed: int = 0, scale: float = 1.0, max_seq_len: int = 32):
    """A small random encoder-decoder; ``scale`` > 1 spreads its output distributions apart."""
    cfg = ModelConfig(arch="encoder-decoder", vocab_size=vocab_size, n_layer=2, n_encoder_layer=2, n_head=2,
                      n_embd=16, intermediate_size=32, max_seq_len=max_seq_len, positions="sinusoidal",
                      norm_placement=norm, final_norm=norm == "pre", activation="relu", embedding_scale=True)
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    return model


# ---------------------------------------------------------------- tasks and splits


def test_examples_are_right_by_an_independent_check():
    rng = random.Random(0)
    for _ in range(200):
        s = get_task("copy").sample(rng, "train")
        assert s.target == s.source and 1 <= len(s.source) <= 16
        r = get_task("reverse").sample(rng, "test")
        assert r.target == "".join(reversed(r.source)) and 17 <= len(r.source) <= 20
        o = get_task("sort").sample(rng, "train")
        assert list(o.target) == sorted(o.source)
        a = get_task("addition").sample(rng, "train")  # the sum units digit first: 123+45 -> 861
        x, y = a.source.split("+")
        assert int(a.target[::-1]) == int(x) + int(y) and max(len(x), len(y)) <= 5
        u = get_task("addition", lsb_first=False).sample(rng, "test")
        assert int(u.target) == sum(int(n) for n in u.source.split("+"))
        e = get_task("addition").sample(rng, "extra")
        assert max(len(n) for n in e.source.split("+")) == 6
        d = get_task("date").sample(rng, "train")
        for fmt in ("%d %B %Y", "%B %d, %Y", "%d %b %Y"):
            try:
                parsed = datetime.strptime(d.source, fmt)
                break
            except ValueError:
                continue
        else:
            raise AssertionError(f"unparseable date {d.source!r}")
        assert parsed.strftime("%Y-%m-%d") == d.target
        m = get_task("roman-to-int").sample(rng, "train")
        assert to_roman(int(m.target)) == m.source and get_task("int-to-roman").sample(rng, "test").source.isdigit()


def test_roman_numerals_by_hand():
    assert [to_roman(n) for n in (1, 4, 9, 14, 40, 90, 400, 1994, 2024, 3888, 3999)] == [
        "I", "IV", "IX", "XIV", "XL", "XC", "CD", "MCMXCIV", "MMXXIV", "MMMDCCCLXXXVIII", "MMMCMXCIX"]
    with pytest.raises(ValueError, match="1..3999"):
        to_roman(0)


@pytest.mark.parametrize("name", list(TASKS))
def test_splits_are_deterministic_and_disjoint(name):
    task = get_task(name)
    splits = make_splits(task, n_test=200, n_valid=100, n_extra=100)
    again = make_splits(task, n_test=200, n_valid=100, n_extra=100)
    assert splits == again  # the same seed, the same held-out examples
    sets = [{e.source for e in part} for part in (splits.test, splits.valid, splits.extra)]
    assert len(sets[0]) == 200 and len(sets[1]) == 100
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    train = TrainSampler(task, splits.sources(), seed=3).batch(3000)
    assert not {e.source for e in train} & splits.sources()
    # held out by construction, not only by rejection: what the split says is never in training
    if name in ("copy", "reverse", "sort"):
        assert max(len(e.source) for e in train) <= 16 < min(len(e.source) for e in splits.test)
    elif name == "date":
        years = lambda exs: {e.target[:4] for e in exs}  # noqa: E731
        assert not years(train) & years(splits.test)
    elif name.startswith("roman") or name.endswith("roman"):
        values = lambda exs: {e.target if e.target.isdigit() else e.source for e in exs}  # noqa: E731
        assert not values(train) & values(splits.test)
    assert task_from_dict(task.to_dict()) == task


def test_unknown_task_and_bad_settings():
    with pytest.raises(ValueError, match="unknown seq2seq task 'copyy'; tasks: copy, reverse"):
        get_task("copyy")
    with pytest.raises(ValueError, match="1 <= lo <= hi"):
        get_task("copy", train_lengths=(3, 2))
    with pytest.raises(ValueError, match="not in this task's vocabulary"):
        get_task("reverse").vocab().encode("abz")


def test_vocab_and_batch_layout():
    v = Vocab("cab")
    assert v.itos == ["<pad>", "<bos>", "<eos>", "a", "b", "c"] and v.decode([BOS, 5, 3, EOS, 4]) == "ca"
    b = encode_batch([Example("ab", "ba"), Example("c", "c")], v)
    assert b.src.tolist() == [[3, 4, EOS], [5, EOS, PAD]]
    assert b.tgt_in.tolist() == [[BOS, 4, 3], [BOS, 5, PAD]] and b.tgt_out.tolist() == [[4, 3, EOS], [5, EOS, PAD]]
    assert b.src_mask.tolist() == [[1, 1, 1], [1, 1, 0]]


# ---------------------------------------------------------------- masks, loss, schedule


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_padding_never_changes_a_real_output(norm):
    """The same rows with 3 extra <pad> columns on source and target: identical logits at every
    real position (and a short row padded in a batch equals the row alone)."""
    model = _tiny(9, norm)
    v = Vocab("abcdef")
    b = encode_batch([Example("abcde", "edcba"), Example("fa", "af")], v)
    more = lambda t: torch.cat([t, torch.zeros(t.shape[0], 3, dtype=t.dtype)], dim=1)  # noqa: E731
    with torch.no_grad():
        plain = model(b.src, b.tgt_in, src_mask=b.src_mask, tgt_mask=b.tgt_mask)
        padded = model(more(b.src), more(b.tgt_in), src_mask=more(b.src_mask), tgt_mask=more(b.tgt_mask))
        alone = model(b.src[1:, :3], b.tgt_in[1:, :3])
    real = b.tgt_mask.bool()
    torch.testing.assert_close(padded[:, : plain.shape[1]][real], plain[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(plain[1, :3], alone[0], atol=1e-5, rtol=0)


def test_label_smoothing_by_hand():
    logits = torch.tensor([[[0.5, 1.0, 2.0, -1.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]]])  # (1, 2, V=5)
    target = torch.tensor([[3, PAD]])  # the second position is padding: no loss
    z = [math.exp(x) for x in (0.5, 1.0, 2.0, -1.0, 0.0)]
    logp = [math.log(x / sum(z)) for x in z]
    # eps = 0.1 over the 3 tokens that can be targets (<eos>=2, 3, 4); <pad>=0 and <bos>=1 get none
    q = {2: 0.1 / 3, 3: 0.9 + 0.1 / 3, 4: 0.1 / 3}
    expected = -sum(q[k] * logp[k] for k in q)
    assert label_smoothed_loss(logits, target, 0.1).item() == pytest.approx(expected, abs=1e-6)
    plain = F.cross_entropy(logits.view(-1, 5), target.view(-1), ignore_index=PAD)
    assert label_smoothed_loss(logits, target, 0.0).item() == pytest.approx(plain.item(), abs=1e-6)


def test_noam_schedule_by_hand():
    # the paper's base model: d_model 512, 4000 warmup steps
    assert noam_lr(1, d_model=512, warmup_steps=4000) == pytest.approx(512**-0.5 * 4000**-1.5, rel=1e-12)
    assert noam_lr(4000, d_model=512, warmup_steps=4000) == pytest.approx(6.987712e-4, rel=1e-6)
    assert noam_lr(16000, d_model=512, warmup_steps=4000) == pytest.approx(3.493856e-4, rel=1e-6)
    assert noam_lr(100, d_model=128, warmup_steps=400, factor=2.0) == pytest.approx(2 / math.sqrt(128) * 100 / 8000)
    assert [inverse_sqrt_lr(s, lr=1e-3, warmup_steps=100) for s in (1, 50, 100, 400)] == pytest.approx(
        [1e-5, 5e-4, 1e-3, 5e-4])
    for step in (1, 37, 400, 401, 10_000):  # the same curve, named by its peak
        factor = 1e-3 * math.sqrt(128 * 400)
        assert inverse_sqrt_lr(step, lr=1e-3, warmup_steps=400) == pytest.approx(
            noam_lr(step, d_model=128, warmup_steps=400, factor=factor), rel=1e-12)
    with pytest.raises(ValueError, match="from 1"):
        noam_lr(0, d_model=8, warmup_steps=4)


def test_length_penalty_by_hand():
    assert length_penalty(1, 0.6) == 1.0 and length_penalty(7, 1.0) == 2.0
    assert length_penalty(3, 0.5) == pytest.approx(math.sqrt(8 / 6))


# ---------------------------------------------------------------- decoding


def test_cache_reorder_moves_rows():
    cache = KVCache(n_layer=1, batch=3, n_kv_head=1, max_len=4, head_size=2)
    layer = cache.layers[0]
    k = torch.arange(3 * 2 * 2, dtype=torch.float).view(3, 1, 2, 2)
    layer.append(k, -k)
    layer.memory_kv = (torch.arange(3.0)[:, None], torch.arange(3.0)[:, None])
    cache.reorder(torch.tensor([2, 0, 0]))
    assert torch.equal(layer.k[:, :, :2], k[[2, 0, 0]]) and torch.equal(layer.v[:, :, :2], -k[[2, 0, 0]])
    assert layer.memory_kv[0].flatten().tolist() == [2.0, 0.0, 0.0]


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_cached_greedy_equals_uncached(norm):
    model = _tiny(8, norm, scale=3.0)
    src = torch.tensor([[3, 4, 5, 6, EOS], [7, 3, EOS, PAD, PAD], [5, EOS, PAD, PAD, PAD]])
    mask = (src != PAD).long()
    cached = greedy_decode(model, src, mask, max_len=10)
    assert cached == greedy_decode(model, src, mask, max_len=10, use_cache=False)
    assert any(len(row) > 1 for row in cached)  # not a trivial immediate <eos>
    # the cross-attention keys/values are computed once: the memory's projection runs at step 1 only
    calls = []
    handle = model.layers[0].cross_attn.kv.register_forward_hook(lambda *a: calls.append(1))
    greedy_decode(model, src, mask, max_len=6)
    handle.remove()
    assert len(calls) == 1


def _sequence_logprob(model, src, ids):
    """log P(ids | src) by one full forward pass without a cache (the reference)."""
    tgt = torch.tensor([[BOS] + ids[:-1]])
    with torch.no_grad():
        logp = next_logprobs(model(src, tgt))[0]  # (T, V)
    return sum(logp[t, i].item() for t, i in enumerate(ids))


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_search_equals_exhaustive_search(alpha, seed):
    """Vocab of 2 letters + <eos>, at most 3 output tokens: score every possible output
    (ending in <eos>, or cut at 3 tokens) and compare the best with a beam of 8 (= 2^3, every
    unfinished prefix fits)."""
    model = _tiny(5, seed=seed, scale=4.0)  # <pad> <bos> <eos> a b
    src = torch.tensor([[3, 4, 4, EOS]])
    max_len, letters = 3, (3, 4)
    candidates = [list(p) + [EOS] for n in range(max_len) for p in itertools.product(letters, repeat=n)]
    candidates += [list(p) for p in itertools.product(letters, repeat=max_len)]  # cut at max_len
    scored = sorted(((_sequence_logprob(model, src, c) / length_penalty(len(c), alpha), c) for c in candidates),
                    reverse=True)
    best_score, best = scored[0]
    assert scored[0][0] - scored[1][0] > 1e-4  # a clear winner (else the comparison would be about rounding)
    hyp = beam_search(model, src, beam=8, alpha=alpha, max_len=max_len)[0][0]
    assert hyp.ids + ([EOS] if hyp.finished else []) == best
    assert hyp.score == pytest.approx(best_score, abs=1e-5)
    narrow = beam_search(model, src, beam=1, alpha=alpha, max_len=max_len)[0][0]
    assert narrow.score <= best_score + 1e-6  # a narrower beam can only do worse


def test_beam_search_batches_like_single_rows():
    model = _tiny(8, scale=3.0)
    src = torch.tensor([[3, 4, 5, EOS], [6, 7, EOS, PAD]])
    both = beam_search(model, src, (src != PAD).long(), beam=3, max_len=6)
    one = beam_search(model, src[1:, :3], beam=3, max_len=6)
    assert [h.ids for h in both[1]] == [h.ids for h in one[0]]
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        beam_search(model, src, beam=2, alpha=-1.0, max_len=6)


# ---------------------------------------------------------------- training, checkpoints, CLI


def test_short_copy_run_learns_and_reloads(tmp_path):
    """A few seconds of training on strings of 1..5 letters: 1000 held-out strings of 3..5 letters,
    none of them ever trained on (rejected from the training stream), are copied exactly."""
    cfg = Seq2SeqConfig(task="copy", task_options={"symbols": "abcdefgh", "train_lengths": [1, 5],
                                                   "test_lengths": [3, 5]},
                        n_embd=32, ffn=64, n_head=2, n_layer=1, batch_size=32, lr=5e-3, warmup_steps=30, ema=0.9,
                        max_steps=400, minutes=0.5, eval_every=50, stop_at=0.98)
    result = train_seq2seq(cfg, tmp_path / "run", log=None)
    assert result.test_exact >= 0.9, result
    model, task, vocab, info = load_seq2seq(tmp_path / "run")
    assert task == cfg.make_task() and info["result"]["test_exact"] == result.test_exact
    acc, _ = exact_match(model, vocab, make_splits(task).test)
    assert acc == pytest.approx(result.test_exact)


def test_checkpoint_round_trip_keeps_outputs(tmp_path):
    task = get_task("reverse")
    cfg = Seq2SeqConfig(task="reverse", n_embd=16, ffn=32, n_head=2, norm="post")
    torch.manual_seed(0)
    model = build_model(cfg.model_config(task)).eval()
    save_seq2seq(model, tmp_path / "ckpt", task, cfg)
    again, task2, vocab, _ = load_seq2seq(tmp_path / "ckpt")
    src = torch.tensor([[3, 4, 5, EOS]])
    assert task2 == task and again.cfg.norm_placement == "post" and not again.cfg.final_norm
    assert greedy_decode(again, src, max_len=6) == greedy_decode(model, src, max_len=6)


@pytest.mark.parametrize("argv, message", [
    (["seq2seq", "train", "--task", "copyy"], "unknown seq2seq task 'copyy'"),
    (["seq2seq", "train", "--task", "copy", "--norm", "middle"], "norm='middle'"),
    (["seq2seq", "eval", "{tmp}/nowhere"], "no checkpoint at"),
    (["seq2seq", "eval", "{tmp}"], "is not a seq2seq checkpoint"),
    (["seq2seq", "translate", "{tmp}/bad", "abc"], "not a readable safetensors file"),
])
def test_cli_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text('{"arch": "encoder-decoder", "n_encoder_layer": 1}')
    (bad / "model.safetensors").write_bytes(b"not safetensors")
    (bad / "seq2seq.json").write_text('{"format": "lucidlm-seq2seq", "task": {"name": "copy"}, "vocab": "ab"}')
    code = main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and re.match(r"lucidlm: error: ", err) and message in err and "Traceback" not in err


def test_cli_train_eval_translate_plot(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["seq2seq", "train", "--task", "reverse", "--out", str(out), "--max-steps", "3", "--width", "16",
                 "--ffn", "32", "--heads", "2", "--quiet", "--eval-every", "3"]) == 0
    assert "test exact match" in capsys.readouterr().out
    assert main(["seq2seq", "eval", str(out), "--task", "reverse", "--beam", "2", "--limit", "4"]) == 0
    assert re.search(r"reverse test: exact match \d\.\d{4} \(\d/4, beam 2", capsys.readouterr().out)
    assert main(["seq2seq", "eval", str(out), "--task", "copy"]) == 2
    assert "trained on task 'reverse', not 'copy'" in capsys.readouterr().err
    assert main(["seq2seq", "translate", str(out), "abc"]) == 0
    assert set(capsys.readouterr().out.strip()) <= set("abcdefghij")
    assert main(["seq2seq", "plot", str(out), "abcd", "--out", str(tmp_path / "a.png")]) == 0
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
