"""clip_unit_norms_: max_norm_'s rule on a tensor whose units span given dims (stacked members)."""

from __future__ import annotations

import torch

from droplab.regularize import clip_unit_norms_, max_norm_


def test_stacked_members_match_max_norm_on_each_member():
    g = torch.Generator().manual_seed(0)
    stacked = torch.randn(4, 6, 5, generator=g) * 2  # (K, in, out): unit j of member k is [k, :, j]
    expected = []
    for k in range(4):
        w = stacked[k].t().clone()  # (out, in), a Linear layer's layout
        max_norm_([w], 3.0)
        expected.append(w.t())
    clip_unit_norms_(stacked, 3.0, (1,))
    torch.testing.assert_close(stacked, torch.stack(expected))
    assert float(torch.linalg.vector_norm(stacked, dim=1).max()) <= 3.0 + 1e-5


def test_units_within_the_bound_stay_bitwise_intact():
    w = torch.randn(3, 8, 4, generator=torch.Generator().manual_seed(1)) * 0.1
    before = w.clone()
    clip_unit_norms_(w, 3.0, (1,))
    assert torch.equal(w, before)
    w[1, :, 2] = 10.0  # one unit of one member over the bound: only it changes
    big = w.clone()
    clip_unit_norms_(w, 3.0, (1,))
    changed = (w != big).any(dim=1)
    assert changed.nonzero().tolist() == [[1, 2]]
    assert abs(float(w[1, :, 2].norm()) - 3.0) < 1e-5
