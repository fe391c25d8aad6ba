"""The example training configs in configs/ are valid TrainConfigs (the README points at them)."""

from pathlib import Path

import pytest

from lucidlm.train import TrainConfig

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_config_is_valid(path):
    cfg = TrainConfig.from_toml(path)
    model = cfg.model_config(vocab_size=65)
    assert model.max_seq_len >= cfg.block_size


def test_there_are_example_configs():
    assert len(CONFIGS) >= 2
