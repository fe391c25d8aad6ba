"""LoRA (lucidlm.nn.lora, lucidlm.loading.adapters): hand-computed outputs, zero-init start, gradients only on A and B,
merge/unmerge, adapters saved and loaded alone."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lucidlm.loading.adapters import ADAPTER_CONFIG, load_adapters, save_adapters
from lucidlm.models.config import PRESETS, ModelConfig
from lucidlm.models.transformer import build_model
from lucidlm.nn.lora import (
    LoRAConfig,
    LoRALinear,
    apply_lora,
    lora_modules,
    lora_state_dict,
    merge_lora,
    remove_lora,
    unmerge_lora,
)


def tiny(family: str = "smollm2-135m", **changes) -> nn.Module:
    base = PRESETS[family].to_dict()
    base.update(dict(vocab_size=64, n_layer=2, n_embd=32, n_head=4, max_seq_len=32, name=f"tiny-{family}"))
    if base.get("n_kv_head"):
        base["n_kv_head"] = 2
    if base.get("intermediate_size"):
        base["intermediate_size"] = 48
    base.update(changes)
    torch.manual_seed(0)
    return build_model(ModelConfig.from_dict(base)).eval()


def randomize_b(model: nn.Module, seed: int = 1) -> None:
    """B = 0 at the start; give it values so that the adapters change the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in lora_modules(model).values():
            m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=g) * 0.1)


IDS = torch.tensor([[1, 5, 9, 3, 7, 2], [4, 4, 8, 1, 0, 6]])


def test_lora_linear_matches_hand_computation():
    base = nn.Linear(3, 2)
    with torch.no_grad():
        base.weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]]))
        base.bias.copy_(torch.tensor([0.5, -0.5]))
    layer = LoRALinear(base, rank=2, alpha=4.0)  # scaling alpha / r = 2
    with torch.no_grad():
        layer.lora_A.copy_(torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]))
        layer.lora_B.copy_(torch.tensor([[1.0, 0.0], [2.0, -1.0]]))
    x = torch.tensor([[1.0, 2.0, 3.0]])
    # W0 x + b = [7, -1] + [0.5, -0.5]; A x = [3, 5]; B A x = [3, 1]; (alpha/r) B A x = [6, 2]
    assert layer(x).tolist() == [[13.5, 0.5]]
    layer.merge()  # W0 + 2 B A = [[1,0,2],[0,1,-1]] + 2 [[1,1,0],[2,1,-1]]
    assert layer.weight.tolist() == [[3.0, 2.0, 2.0], [4.0, 3.0, -3.0]]
    assert layer(x).tolist() == [[13.5, 0.5]]
    layer.unmerge()
    assert layer.weight.tolist() == [[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]]


def test_zero_init_b_leaves_the_model_unchanged():
    model = tiny()
    before = model(IDS)
    apply_lora(model, rank=4, alpha=8, targets=("qkv", "proj", "gate_up", "lm_head"))
    assert all(torch.count_nonzero(m.lora_B) == 0 and torch.count_nonzero(m.lora_A) > 0
               for m in lora_modules(model).values())
    assert torch.equal(model(IDS), before)


def test_only_a_and_b_are_trained():
    model = tiny()
    apply_lora(model, rank=4, alpha=8, targets=("qkv",))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"layers.{i}.attn.qkv.lora_{ab}" for i in range(2) for ab in "AB"}
    # qkv: in 32 -> out 32 + 2 * 2 kv heads * 8 = 64; r (in + out) = 4 * 96 per layer
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 2 * 4 * (32 + 64)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x, y = IDS[:, :-1], IDS[:, 1:]
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        for n, p in model.named_parameters():
            assert (p.grad is not None) == p.requires_grad, n
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1  # the adapters learn
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)  # W0 untouched


def test_targets_match_name_suffixes():
    model = apply_lora(tiny(), targets=("proj",))
    assert sorted(lora_modules(model)) == [f"layers.{i}.{m}.proj" for i in range(2) for m in ("attn", "mlp")]
    model = apply_lora(tiny(), targets=("attn.proj", "gate_up"))
    assert sorted(lora_modules(model)) == sorted(f"layers.{i}.{m}" for i in range(2)
                                                 for m in ("attn.proj", "mlp.gate_up"))
    gpt2 = apply_lora(tiny("gpt2"), targets=("fc", "lm_head"))
    assert sorted(lora_modules(gpt2)) == ["layers.0.mlp.fc", "layers.1.mlp.fc", "lm_head"]
    # parameter names of the base weights do not change, so checkpoints keep loading by name
    assert "layers.0.mlp.fc.weight" in dict(gpt2.named_parameters())


def test_bad_targets_and_configs_are_clear_errors():
    with pytest.raises(ValueError, match=r"\['fc'\] match no Linear.*attn.qkv, attn.proj, mlp.gate_up, mlp.proj"):
        apply_lora(tiny(), targets=("qkv", "fc"))
    model = apply_lora(tiny())
    with pytest.raises(ValueError, match="already has LoRA"):
        apply_lora(model)
    for bad in (dict(rank=0), dict(alpha=-1), dict(dropout=1.0), dict(targets=())):
        with pytest.raises(ValueError, match="LoRA"):
            LoRAConfig(**bad)


def test_merge_equals_unmerged_and_unmerge_restores_w0():
    model = apply_lora(tiny(), rank=4, alpha=8, targets=("qkv", "proj", "gate_up"))
    randomize_b(model)
    w0 = {n: m.weight.detach().clone() for n, m in lora_modules(model).items()}
    unmerged = model(IDS)
    merge_lora(model)
    assert all(m.merged for m in lora_modules(model).values())
    assert not torch.equal(lora_modules(model)["layers.0.attn.qkv"].weight, w0["layers.0.attn.qkv"])
    torch.testing.assert_close(model(IDS), unmerged, atol=1e-5, rtol=0)
    merge_lora(model)  # merging twice must not add B A twice
    torch.testing.assert_close(model(IDS), unmerged, atol=1e-5, rtol=0)
    unmerge_lora(model)
    for n, m in lora_modules(model).items():
        torch.testing.assert_close(m.weight, w0[n], atol=1e-6, rtol=0)
    torch.testing.assert_close(model(IDS), unmerged, atol=1e-5, rtol=0)


def test_merge_keeps_the_column_major_layout():
    model = apply_lora(tiny(), rank=4, alpha=8, targets=("qkv", "proj", "gate_up"))
    randomize_b(model)
    reference = model(IDS)
    model.use_column_major_weights()  # finds the LoRALinear layers: they are nn.Linear
    qkv = lora_modules(model)["layers.0.attn.qkv"]
    assert not qkv.weight.is_contiguous() and qkv.weight.t().is_contiguous()
    merge_lora(model)
    assert qkv.weight.t().is_contiguous()  # still column-major after the in-place add
    torch.testing.assert_close(model(IDS), reference, atol=1e-5, rtol=0)
    cache = model.new_cache(2, 8)
    step = torch.cat([model(IDS[:, :5], cache=cache), model(IDS[:, 5:], cache=cache)], dim=1)
    torch.testing.assert_close(step, reference, atol=1e-5, rtol=0)


def test_merging_a_tied_head_is_refused():
    model = apply_lora(tiny(), targets=("lm_head",))  # SmolLM2 ties lm_head to the token embedding
    randomize_b(model)
    with pytest.raises(ValueError, match="tied to 'embed.tokens.weight'"):
        merge_lora(model)


def test_remove_lora_gives_a_plain_checkpoint(tmp_path):
    from lucidlm.loading.checkpoint import load_checkpoint, save_checkpoint

    model = apply_lora(tiny(), rank=4, alpha=8, targets=("qkv", "gate_up"))
    randomize_b(model)
    expected = model(IDS)
    remove_lora(model)
    assert not lora_modules(model) and type(model.layers[0].attn.qkv) is nn.Linear
    save_checkpoint(model, tmp_path / "merged")
    loaded, _ = load_checkpoint(tmp_path / "merged", tokenizer=False)
    torch.testing.assert_close(loaded(IDS), expected, atol=1e-5, rtol=0)


def test_save_and_load_adapters_round_trip(tmp_path):
    base = tiny()
    fresh = copy.deepcopy(base)
    model = apply_lora(base, rank=4, alpha=8, targets=("qkv", "proj"))
    randomize_b(model)
    expected = model(IDS)
    save_adapters(model, tmp_path / "adapter", base_model="tiny")
    meta = json.loads((tmp_path / "adapter" / ADAPTER_CONFIG).read_text())
    assert (meta["rank"], meta["alpha"], meta["targets"], meta["base_model"]) == (4, 8.0, ["qkv", "proj"], "tiny")
    load_adapters(fresh, tmp_path / "adapter")  # a model without adapters gets them from the config
    assert fresh.lora_config == LoRAConfig(4, 8.0, ("qkv", "proj"))
    assert lora_state_dict(fresh).keys() == lora_state_dict(model).keys()
    assert torch.equal(fresh(IDS), expected)


def test_load_adapters_mismatch_errors(tmp_path):
    model = apply_lora(tiny(), rank=4, alpha=8, targets=("qkv",))
    save_adapters(model, tmp_path / "a")
    with pytest.raises(ValueError, match="rank=4.*but the model has rank=2"):
        load_adapters(apply_lora(tiny(), rank=2, alpha=8, targets=("qkv",)), tmp_path / "a")
    with pytest.raises(ValueError, match="do not fit this model: shape mismatch"):
        load_adapters(tiny(n_embd=48, n_head=4), tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_adapters(tiny(), tmp_path / "nothing-here")
    with pytest.raises(ValueError, match="no LoRA adapters to save"):
        save_adapters(tiny(), tmp_path / "b")


def test_training_a_model_given_with_adapters_saves_a_loadable_checkpoint(tmp_path):
    """train(model=apply_lora(...)) with no [lora] table in the config: the run records the
    model's own LoRA settings, so load_model rebuilds the adapters and gets the trained model back."""
    from lucidlm.loading.load import load_model
    from lucidlm.train import TrainConfig, train

    model = apply_lora(tiny(), rank=4, alpha=8, targets=("qkv", "proj"))

    def get_batch(split, n, generator):
        x = torch.randint(64, (n, 9), generator=generator)  # (n, 9): a random-token "language"
        return x[:, :-1], x[:, 1:]

    cfg = TrainConfig(out_dir=str(tmp_path / "run"), max_steps=3, batch_size=2, block_size=8, warmup_steps=1,
                      lr=1e-2, eval_interval=3, eval_iters=1, progress=False)
    train(cfg, model=model, get_batch=get_batch)
    model.eval()
    loaded, _ = load_model(tmp_path / "run" / "last")
    assert json.loads((tmp_path / "run" / "last" / "train_config.json").read_text())["lora"]["rank"] == 4
    with torch.no_grad():
        torch.testing.assert_close(loaded(IDS), model(IDS), atol=1e-5, rtol=0)
