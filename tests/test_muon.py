"""Muon (lucidlm/train/muon.py): the Newton-Schulz step against an SVD, the update rule by hand,
and a real training run."""

import math

import pytest
import torch

from lucidlm.train.muon import Muon, orthogonalize


@pytest.mark.parametrize("shape", [(8, 8), (16, 4), (4, 16), (384, 128)])
def test_orthogonalize_approximates_u_vt(shape):
    torch.manual_seed(0)
    m = torch.randn(shape)
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    x = orthogonalize(m)
    # Same singular vectors as m: x's projection onto them is diagonal...
    proj = u.T @ x @ vh.T  # (k, k)
    off = proj - torch.diag(torch.diagonal(proj))
    assert off.abs().max() < 1e-3
    # ...with singular values pushed toward 1 (the quintic iteration lands in about [0.7, 1.2])
    sv = torch.linalg.svdvals(x)
    assert sv.min() > 0.5 and sv.max() < 1.3


def test_muon_step_by_hand():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(6, 3))
    w0 = w.detach().clone()
    g = torch.randn(6, 3)
    opt = Muon([{"params": [w], "muon": True, "momentum": 0.9, "weight_decay": 0.0}], lr=0.1)
    w.grad = g.clone()
    opt.step()
    # first step: buf = g; Nesterov update = g + 0.9 g; scaled by sqrt(6 / 3)
    expected = w0 - 0.1 * math.sqrt(2.0) * orthogonalize(1.9 * g)
    torch.testing.assert_close(w.detach(), expected)


def test_adamw_groups_match_torch_adamw():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(5, 4))
    b = torch.nn.Parameter(a.detach().clone())
    ours = Muon([{"params": [a], "weight_decay": 0.1}], lr=1e-2, betas=(0.9, 0.99))
    ref = torch.optim.AdamW([b], lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1, eps=1e-8)
    for _ in range(5):
        g = torch.randn(5, 4)
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-6)


def test_muon_trains_a_model(tmp_path):
    from lucidlm.data.prepare import prepare_dataset
    from lucidlm.train import TrainConfig
    from lucidlm.train.loop import train

    text = "".join(f"{i % 7} plus {i % 5} is {(i % 7) + (i % 5)}.\n" for i in range(3000))
    (tmp_path / "t.txt").write_text(text)
    prepare_dataset([tmp_path / "t.txt"], tmp_path / "data", "char", progress=False)
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), data=str(tmp_path / "data"), optimizer="muon",
                      model={"n_layer": 2, "n_head": 2, "n_embd": 32, "max_seq_len": 32, "positions": "rope",
                             "norm": "rmsnorm", "activation": "relu2", "bias": False},
                      batch_size=8, block_size=32, max_steps=60, warmup_steps=5, lr=3e-3, min_lr=3e-4,
                      eval_interval=60, eval_iters=4, progress=False, log_interval=60)
    result = train(cfg)
    first = sum(result.losses[s] for s in range(1, 4)) / 3
    assert result.val_losses[60] < first - 1.0  # ln(vocab) ~ 2.8 -> well below
    with pytest.raises(ValueError, match="muon_lr"):
        cfg.replace(muon_lr=0.0)
