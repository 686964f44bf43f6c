"""ResidualDropPath / drop_path_residual: same results as the masked form, branch on kept rows only."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import binomtest
from torch import nn

import droplab.nn as dn
from droplab.errors import ConfigError, DataError
from droplab.functional import drop_path, drop_path_residual


class Counting(nn.Module):
    def __init__(self, d=16):
        super().__init__()
        torch.manual_seed(0)
        self.f = nn.Sequential(nn.Linear(d, 32), nn.GELU(), nn.Linear(32, d))
        self.rows = []

    def forward(self, x):
        self.rows.append(x.shape[0])
        return self.f(x)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("scale_by_keep", [True, False])
def test_equals_the_masked_form_under_the_same_mask(seed, scale_by_keep):
    branch = Counting()
    x = torch.randn(64, 5, 16, generator=torch.Generator().manual_seed(seed + 10), requires_grad=True)
    ours = drop_path_residual(x, branch, 0.3, scale_by_keep=scale_by_keep, generator=torch.Generator().manual_seed(seed))
    ref = x + drop_path(branch(x), 0.3, scale_by_keep=scale_by_keep, generator=torch.Generator().manual_seed(seed))
    dropped = (ref - x).flatten(1).abs().sum(1) == 0
    kept = int((~dropped).sum())
    assert branch.rows == [kept, 64] and 0 < kept < 64  # ours ran on the kept rows only
    assert torch.equal(ours[dropped], x[dropped])
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)
    # Gradients through the skipped form equal those of the masked form.
    g1 = torch.autograd.grad(ours.square().sum(), [x, *branch.parameters()])
    g2 = torch.autograd.grad(ref.square().sum(), [x, *branch.parameters()])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # sums over other batch sizes


def test_rows_are_kept_at_rate_one_minus_p():
    # 4000 rows, p=0.3: the kept count is Binomial(4000, 0.7); a two-sided test at 1e-3.
    branch = Counting()
    drop_path_residual(torch.randn(4000, 16), branch, 0.3, generator=torch.Generator().manual_seed(5))
    assert binomtest(branch.rows[0], 4000, 0.7).pvalue > 1e-3


def test_edge_cases():
    branch = Counting()
    x = torch.randn(6, 16)
    with torch.no_grad():
        full = x + branch.f(x)
    assert torch.equal(drop_path_residual(x, branch, 0.0), full)
    assert torch.equal(drop_path_residual(x, branch, 0.5, training=False), full)
    layer = dn.ResidualDropPath(branch, 0.5).eval()
    assert torch.equal(layer(x), full) and "p=0.5" in repr(layer)
    branch.rows.clear()
    # p = 0.999 on 6 rows: with this seed every row is dropped, so the branch never runs.
    out = drop_path_residual(x, branch, 0.999, generator=torch.Generator().manual_seed(0))
    assert branch.rows == [] and torch.equal(out, x) and out is not x


def test_errors():
    with pytest.raises(ConfigError, match=r"p must be in \[0, 1\), got 1.0"):
        drop_path_residual(torch.randn(4, 3), nn.Identity(), 1.0)
    with pytest.raises(DataError, match="batch dimension"):
        drop_path_residual(torch.tensor(1.0), nn.Identity(), 0.2)
    with pytest.raises(DataError, match=r"keep the shape of its input, expected \(\d+, 3\), got \(\d+, 2\)"):
        drop_path_residual(torch.randn(40, 3), nn.Linear(3, 2), 0.2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match="p must be in"):
        dn.ResidualDropPath(nn.Identity(), -0.1)
