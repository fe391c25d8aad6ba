"""The trainer: TrainConfig parsing and validation, the lr schedules against hand-computed values,
AdamW's parameter groups, gradient accumulation against one big batch, NaN handling, metrics,
the loss plot, and the checkpoint a run leaves. Tiny models (2 layers, n_embd 32) on a slice of
Tiny Shakespeare, one id per character, on CPU."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lucidlm.models.config import ModelConfig
from lucidlm.models.transformer import build_model
from lucidlm.tokenizers import CharTokenizer
from lucidlm.tokenizers.corpus import tiny_shakespeare
from lucidlm.train import TrainConfig, TrainingDiverged, train
from lucidlm.train.config import apply_overrides
from lucidlm.train.metrics import log_line, plot_run, read_metrics
from lucidlm.train.optim import build_optimizer, param_groups
from lucidlm.train.schedule import lr_at

T = 32  # block_size in these tests


class CharBatches:
    """nanoGPT's get_batch over an in-memory char-level Tiny Shakespeare slice: n random windows
    (x, y = x shifted by one), drawn from the generator the trainer passes in."""

    def __init__(self, chars: int = 40_000, block_size: int = T) -> None:
        text = tiny_shakespeare()[:chars]
        self.tokenizer = CharTokenizer.from_text(text)
        data = torch.tensor(self.tokenizer.encode(text))
        cut = int(0.9 * len(data))
        self.splits = {"train": data[:cut], "val": data[cut:]}
        self.block_size = block_size
        self.calls = 0

    def __call__(self, split: str, n: int, generator: torch.Generator):
        self.calls += split == "train"
        d = self.splits[split]
        ix = torch.randint(len(d) - self.block_size, (n,), generator=generator)
        x = torch.stack([d[i:i + self.block_size] for i in ix])  # (n, T)
        y = torch.stack([d[i + 1:i + 1 + self.block_size] for i in ix])  # (n, T)
        return x, y


def tiny_config(out_dir, vocab_size: int, **changes) -> TrainConfig:
    base = dict(out_dir=str(out_dir), model={"vocab_size": vocab_size, "n_layer": 2, "n_head": 4, "n_embd": 32,
                                              "max_seq_len": 64},
                batch_size=8, block_size=T, max_steps=12, warmup_steps=3, lr=3e-3, min_lr=3e-4,
                eval_interval=6, eval_iters=2, progress=False, seed=7, fused="off")
    base.update(changes)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def batches():
    return CharBatches()


# ----------------------------------------------------------------------------------------------
# the config


def test_config_from_toml_with_overrides(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('out_dir = "o"\ndata = "d"\nlr = 1\nschedule = "wsd"\n[model]\npreset = "gpt2"\nn_layer = 4\n')
    cfg = TrainConfig.from_toml(path, ["--batch_size=3", "--compile", "--model.n_embd=96", "--model.n_head=4",
                                       "--min-lr=0"])
    assert (cfg.lr, cfg.batch_size, cfg.compile, cfg.schedule, cfg.min_lr) == (1.0, 3, True, "wsd", 0.0)
    assert isinstance(cfg.lr, float)
    mcfg = cfg.model_config(vocab_size=65)
    assert (mcfg.n_layer, mcfg.n_embd, mcfg.n_head, mcfg.vocab_size, mcfg.max_seq_len) == (4, 96, 4, 65, 1024)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg  # JSON round trip
    # a preset given as a string takes --model.X overrides too
    assert apply_overrides({"model": "gpt2"}, ["--model.n_layer=2"])["model"] == {"preset": "gpt2", "n_layer": 2}


@pytest.mark.parametrize("toml, overrides, message", [
    ("lr = 1e-3\nlearning_rate = 1\n", [], "unknown key(s) ['learning_rate']"),
    ("", ["--batchsize=4"], "unknown key 'batchsize'"),
    ('batch_size = "8"\n', [], "batch_size must be an integer"),
    ("", ["--batch_size=eight"], "--batch_size: expected an integer, got 'eight'"),
    ("", ["--compile=maybe"], "--compile: expected true or false"),
    ("", ["--model.n_layers=4"], "unknown model key 'n_layers'"),
    ("[model]\nn_layers = 4\n", [], "unknown model key(s) ['n_layers']"),
    ("", ["--model.bias=7"], "--model.bias: expected true or false"),
    ('schedule = "linear"\n', [], "schedule='linear'; choose from"),
    ("lr = 1e-4\nmin_lr = 1e-3\n", [], "min_lr (0.001) must not exceed lr"),
    ("grad_accum = 0\n", [], "grad_accum must be > 0"),
    ("", ["lr=3"], "must look like --key=value"),
    ('task = "sft"\n', [], "task='sft'; choose from"),
])
def test_config_bad_input_names_the_key(tmp_path, toml, overrides, message):
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ValueError) as err:
        TrainConfig.from_toml(path, overrides)
    assert message in str(err.value)


@pytest.mark.parametrize("data, task, resolved, finetunes", [
    ("data/shakespeare-char", "auto", "lm", False),
    ("chats.jsonl", "auto", "chat", True),  # the suffix only sets the default
    ("chats.jsonl", "lm", "lm", False),
    ("chats.json", "chat", "chat", True),  # an explicit task needs no suffix
])
def test_config_task_decides_fine_tuning(data, task, resolved, finetunes):
    cfg = TrainConfig(data=data, task=task)
    assert (cfg.resolved_task, cfg.finetunes) == (resolved, finetunes)
    assert TrainConfig(data=data, task=task, lora={"rank": 2}).finetunes  # LoRA always goes through finetune
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))).resolved_task == resolved


def test_train_refuses_chat_data_without_a_batch_source(tmp_path):
    with pytest.raises(ValueError, match="lucidlm.train.instruct.finetune"):
        train(TrainConfig(out_dir=str(tmp_path / "o"), data=str(tmp_path / "chats.jsonl")))


def test_config_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(FileNotFoundError, match="no training config"):
        TrainConfig.from_toml(tmp_path / "nope.toml")
    (tmp_path / "x.toml").write_text("lr = = 3\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        TrainConfig.from_toml(tmp_path / "x.toml")


# ----------------------------------------------------------------------------------------------
# schedules and the optimizer


def test_lr_schedules_hand_computed():
    kw = dict(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    assert lr_at(1, **kw) == pytest.approx(0.1)  # warmup: lr * step / warmup
    assert lr_at(5, **kw) == pytest.approx(0.5)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(60, **kw) == pytest.approx(0.1 + 0.5 * 0.9)  # cosine half way: cos(pi/2) = 0
    assert lr_at(35, **kw) == pytest.approx(0.1 + 0.5 * (1 + math.cos(math.pi / 4)) * 0.9)
    assert lr_at(110, **kw) == pytest.approx(0.1)
    assert lr_at(500, **kw) == pytest.approx(0.1)
    wsd = dict(kw, schedule="wsd", decay_fraction=0.5)  # decay over steps 55..110
    assert [lr_at(s, **wsd) for s in (10, 30, 55)] == pytest.approx([1.0, 1.0, 1.0])
    assert lr_at(82.5, **wsd) == pytest.approx(0.55)  # linear: half way to min_lr
    assert lr_at(110, **wsd) == pytest.approx(0.1)
    assert lr_at(100, **dict(kw, schedule="constant")) == 1.0
    with pytest.raises(ValueError, match="steps count from 1"):
        lr_at(0, **kw)


def test_param_groups_decay_only_matrices_and_skip_frozen():
    cfg = ModelConfig(vocab_size=50, n_layer=2, n_head=4, n_embd=32, max_seq_len=64)  # tied embeddings
    model = build_model(cfg)
    model.layers[0].requires_grad_(False)  # as LoRA freezes the base model
    decay, no_decay = param_groups(model, 0.1)
    named = {id(p): n for n, p in model.named_parameters()}
    decay_names = {named[id(p)] for p in decay["params"]}
    no_decay_names = {named[id(p)] for p in no_decay["params"]}
    assert "embed.tokens.weight" in decay_names  # the tied matrix, once (lm_head.weight is the same tensor)
    assert all(model.get_parameter(n).dim() >= 2 for n in decay_names)
    assert all(model.get_parameter(n).dim() == 1 for n in no_decay_names)
    assert not any(n.startswith("layers.0.") for n in decay_names | no_decay_names)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(decay["params"]) + len(no_decay["params"]) == len(trainable)
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)
    opt, fused = build_optimizer(model, TrainConfig(fused="off"), torch.device("cpu"))
    assert not fused and opt.defaults["fused"] is None
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(model.requires_grad_(False), 0.1)


def test_log_line_format():
    assert log_line(10, 2.34561, 0.912, 1e-3, 118.23, 6543.2) == \
        "step 10 | loss 2.3456 | grad-norm 0.91 | lr 1.0e-03 | 118.2 ms | 6.5k tok/s"


# ----------------------------------------------------------------------------------------------
# training runs


def test_run_learns_writes_metrics_checkpoint_and_plot(tmp_path, batches, capsys):
    import lucidlm

    V = batches.tokenizer.vocab_size
    cfg = tiny_config(tmp_path / "run", V, max_steps=30, eval_interval=10, lr=1e-2, fused="auto")
    result = train(cfg, tokenizer=batches.tokenizer, get_batch=batches)
    assert result.stopped == "done" and result.step == 30
    # from uniform guessing (ln V nats) to well below it: the model learned character statistics
    assert result.losses[1] == pytest.approx(math.log(V), abs=0.15)
    assert result.val_losses[30] < math.log(V) - 0.8
    out = capsys.readouterr().out
    assert "fused AdamW on" in out and "step 30 | loss " in out and " tok/s" in out

    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    train_steps = [r["step"] for r in records if r["split"] == "train"]
    assert train_steps == list(range(1, 31))
    assert [r["step"] for r in records if r["split"] == "val"] == [10, 20, 30]
    assert {"loss", "grad_norm", "lr", "ms", "tok_per_s"} <= set(records[0])
    assert records[0]["lr"] == pytest.approx(lr_at(1, lr=1e-2, min_lr=3e-4, warmup_steps=3, max_steps=30))

    # last/ is a lucidlm checkpoint that load_model opens; it gives the trained model's logits
    last = tmp_path / "run" / "last"
    assert {p.name for p in last.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json",
                                                 "train_config.json", "train_state.pt"}
    model, tok = lucidlm.load_model(last)
    assert tok.encode("First") == batches.tokenizer.encode("First")
    state = torch.load(last / "train_state.pt", weights_only=True)
    assert state["step"] == 30 and state["best_val_loss"] == min(result.val_losses.values())
    assert json.loads((last / "train_config.json").read_text()) == cfg.to_dict()
    best = tmp_path / "run" / "best"
    assert torch.load(best / "train_state.pt", weights_only=True)["step"] == min(result.val_losses,
                                                                                 key=result.val_losses.get)

    png = plot_run(tmp_path / "run")
    assert png == tmp_path / "run" / "loss.png"
    import matplotlib.image

    image = matplotlib.image.imread(png)
    assert image.shape[:2] == (450, 800) and image[..., :3].std() > 0.05  # drawn, not blank


def test_grad_accum_equals_one_big_batch(tmp_path, batches):
    """4 x 2 micro-batches must train exactly like batches of 8: the same windows (one generator
    draws them in the same order) and, thanks to loss / grad_accum, the same gradients."""
    V = batches.tokenizer.vocab_size
    big = train(tiny_config(tmp_path / "big", V, batch_size=8, eval_interval=100), get_batch=batches)
    accum = train(tiny_config(tmp_path / "acc", V, batch_size=4, grad_accum=2, eval_interval=100),
                  get_batch=batches)
    steps = sorted(big.losses)
    assert steps == sorted(accum.losses) == list(range(1, 13))
    # float32 sums in a different order: equal to ~1e-6 relative
    assert [accum.losses[s] for s in steps] == pytest.approx([big.losses[s] for s in steps], rel=2e-5)


class PoisonedBatches(CharBatches):
    """Step ``bad_step``'s batch has every target ignored (-100): cross-entropy averages over no
    tokens and gives NaN, as a fine-tuning batch without a single answer token would."""

    def __init__(self, bad_step: int) -> None:
        super().__init__(chars=20_000)
        self.bad_step = bad_step

    def __call__(self, split, n, generator):
        x, y = super().__call__(split, n, generator)
        if split == "train" and self.calls == self.bad_step:
            y = torch.full_like(y, -100)
        return x, y


def test_nan_loss_stops_naming_the_step(tmp_path):
    from lucidlm.loading.checkpoint import read_safetensors

    data = PoisonedBatches(bad_step=4)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"step 4: loss is nan.*nan_policy='skip'"):
        train(tiny_config(out, data.tokenizer.vocab_size, max_steps=6, eval_interval=2), get_batch=data)
    # the checkpoint of step 2 stands; the diverged state was never saved
    assert torch.load(out / "last" / "train_state.pt", weights_only=True)["step"] == 2
    weights, _ = read_safetensors(out / "last" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_nan_policy_skip_continues(tmp_path, capsys):
    data = PoisonedBatches(bad_step=3)
    V = data.tokenizer.vocab_size
    result = train(tiny_config(tmp_path / "run", V, max_steps=6, eval_interval=6, nan_policy="skip"),
                   get_batch=data)
    assert result.stopped == "done" and result.skipped_steps == [3]
    assert sorted(result.losses) == [1, 2, 4, 5, 6] and all(math.isfinite(v) for v in result.losses.values())
    assert "step 3 | loss is nan: batch skipped" in capsys.readouterr().out


def test_failed_run_never_replaces_an_existing_checkpoint(tmp_path):
    """--overwrite over a good run, then a NaN on step 1: nothing is saved, last/ is the old one."""
    out = tmp_path / "run"
    V = CharBatches(chars=20_000).tokenizer.vocab_size
    train(tiny_config(out, V, max_steps=3, eval_interval=3), get_batch=CharBatches(chars=20_000))
    before = {p.name: p.read_bytes() for p in (out / "last").iterdir()}
    with pytest.raises(TrainingDiverged, match="step 1: loss is nan"):
        train(tiny_config(out, V, max_steps=3), get_batch=PoisonedBatches(bad_step=1), overwrite=True)
    assert {p.name: p.read_bytes() for p in (out / "last").iterdir()} == before


@pytest.mark.slow
def test_compiled_model_has_no_graph_breaks_and_trains_alike():
    """compile=True: the forward pass compiles as one graph, and the loss equals eager mode's."""
    import torch.nn.functional as F

    from lucidlm.models.config import ModelConfig
    from lucidlm.models.transformer import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=50, n_layer=2, n_head=2, n_embd=32, max_seq_len=16,
                                    positions="rope", norm="rmsnorm", activation="relu2"))
    x = torch.randint(0, 50, (4, 16))
    compiled = torch.compile(model, fullgraph=True)  # raises on any graph break
    eager_loss = F.cross_entropy(model(x).flatten(0, 1), x.flatten())
    compiled_loss = F.cross_entropy(compiled(x).flatten(0, 1), x.flatten())
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-5)
    compiled_loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_keep_every_keeps_loadable_models_at_step_0_and_every_k_steps(tmp_path):
    """keep_every: the model alone at step 0 and every k steps (and the last), each a checkpoint
    load_model opens, equal to the weights the run had then: the last kept equals last/."""
    from lucidlm.data import prepare_dataset
    from lucidlm.loading.load import load_model
    from lucidlm.train import TrainConfig, train
    from lucidlm.train.state import kept_steps

    text = tmp_path / "t.txt"
    text.write_text("to be or not to be, that is the question. " * 200)
    prepare_dataset(str(text), tmp_path / "data", tokenizer="char")
    cfg = TrainConfig(data=str(tmp_path / "data"), out_dir=str(tmp_path / "run"), max_steps=7, keep_every=3,
                      batch_size=2, block_size=16, eval_interval=7, eval_iters=1, progress=False, log_interval=7,
                      model={"n_layer": 1, "n_head": 2, "n_embd": 16, "max_seq_len": 16})
    train(cfg)
    kept = kept_steps(tmp_path / "run")
    assert [s for s, _ in kept] == [0, 3, 6, 7]
    first, _ = load_model(kept[0][1])
    last, tok = load_model(kept[-1][1])
    final, _ = load_model(tmp_path / "run" / "last")
    assert tok is not None and not (tmp_path / "run" / "steps" / "step_000007" / "train_state.pt").exists()
    for a, b in zip(last.state_dict().values(), final.state_dict().values()):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(first.state_dict().values(), final.state_dict().values()))
