"""LayerDrop and prune: skip rate, skipped compute, generator use, the transformer place, pruning."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import binomtest
from torch import nn

import droplab.nn as dn
from droplab.errors import ConfigError
from droplab.models import ModelSpec, build_model, parse_dropout, prune
from droplab.train.schedules import scheduled_layers


class Counting(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        self.calls += 1
        return x + self.lin(x)


def test_blocks_are_skipped_at_rate_p_and_not_computed():
    block = Counting()
    layer = dn.LayerDrop(block, 0.3, generator=torch.Generator().manual_seed(0))
    x = torch.randn(5, 4)
    skipped = sum(layer(x) is x for _ in range(2000))
    assert block.calls == 2000 - skipped  # a skipped block is not run
    assert binomtest(skipped, 2000, 0.3).pvalue > 1e-3  # 2000 draws, two-sided at 1e-3


def test_eval_and_p_zero_run_the_block_and_draws_come_from_the_generator():
    block = Counting()
    x = torch.randn(5, 4)
    assert torch.equal(dn.LayerDrop(block, 0.5).eval()(x), block(x))
    assert torch.equal(dn.LayerDrop(block, 0.0)(x), block(x))
    state = torch.get_rng_state()

    def pattern(seed):
        layer = dn.LayerDrop(block, 0.5, generator=torch.Generator().manual_seed(seed))
        return [layer(x) is x for _ in range(64)]

    assert pattern(1) == pattern(1) and pattern(1) != pattern(2)
    assert torch.equal(torch.get_rng_state(), state)
    assert "p=0.5" in repr(dn.LayerDrop(block, 0.5))
    with pytest.raises(ConfigError, match="p must be in"):
        dn.LayerDrop(block, 1.0)


SPEC = ModelSpec(kind="transformer", hidden=(16,), heads=2, layers=4, dropout=parse_dropout("block=0.2"))


def test_the_transformer_wraps_each_block_and_the_place_is_checked():
    model = build_model(SPEC, (8,), 3, seed=0)
    assert [label for label, _ in model.describe()] == [f"block[{i}]" for i in range(4)]
    assert all(isinstance(b, dn.LayerDrop) for b in model.blocks)
    with pytest.raises(ConfigError, match="place 'block' does not exist in a mlp model"):
        ModelSpec(hidden=(8,), dropout={"block": 0.2})
    with pytest.raises(ConfigError, match="'layerdrop' cannot go at place 'hidden'"):
        ModelSpec(kind="transformer", hidden=(16,), heads=2, dropout=parse_dropout("hidden=0.2:layerdrop"))
    scheduled = build_model(
        ModelSpec(kind="transformer", hidden=(16,), heads=2, dropout=parse_dropout("block=0.2:late@1")), (8,), 3
    )
    assert len(scheduled_layers(scheduled)) == 2


def test_prune_keeps_every_other_block_and_leaves_the_model_alone():
    model = build_model(SPEC, (8,), 3, seed=0).eval()
    x = torch.randn(3, 8)
    half = prune(model, 2)
    assert half.kept_blocks == (0, 2) and len(half.blocks) == 2 and len(model.blocks) == 4
    assert [label for label, _ in half.describe()] == ["block[0]", "block[2]"]
    with torch.no_grad():
        h = model.input_proj(x.unsqueeze(-1)) + model.pos[:, :8]
        h = model.blocks[2](model.blocks[0](h))
        expect = model.head(model.final_norm(h).mean(1))
        torch.testing.assert_close(half(x), expect)
    assert prune(model, 3).kept_blocks == (0, 1, 2)
    assert prune(model, 4).kept_blocks == (0, 1, 2, 3)
    assert prune(model, [1, 3]).kept_blocks == (1, 3)


@pytest.mark.parametrize(
    "keep,match",
    [(0, r"keep must be in \[1, 4\]"), (5, r"keep must be in \[1, 4\]"), ([3, 1], "increasing order"),
     ([0, 4], "increasing order"), ("2", "number of blocks or a list"), ([], "number of blocks or a list")],
)
def test_prune_errors(keep, match):
    model = build_model(SPEC, (8,), 3, seed=0)
    with pytest.raises(ConfigError, match=match):
        prune(model, keep)
    with pytest.raises(ConfigError, match="residual blocks"):
        prune(nn.Linear(2, 2), 1)
