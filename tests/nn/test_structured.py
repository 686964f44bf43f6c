"""DropBlock (Ghiasi, Lin, Le 2018): drop fraction, block geometry, masks, schedule, errors."""

import math

import pytest
import scipy.ndimage
import scipy.stats
import torch
import torch.nn.functional as F

import droplab.functional as DF
import droplab.nn as dn
from droplab.errors import ConfigError
from droplab.functional.structured import drop_block_gamma

FUNCS = {1: DF.drop_block1d, 2: DF.drop_block2d, 3: DF.drop_block3d}
LAYERS = {1: dn.DropBlock1d, 2: dn.DropBlock2d, 3: dn.DropBlock3d}


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _dropped(y):
    return y == 0


def _coverage_counts(spatial, bs):
    """n_j: how many valid seed positions cover unit j (independent of the implementation:
    a direct sum over seed positions)."""
    n = torch.zeros(spatial, dtype=torch.float64)
    valid = [s - bs + 1 for s in spatial]
    for idx in torch.cartesian_prod(*[torch.arange(v) for v in valid]).reshape(-1, len(spatial)):
        n[tuple(slice(int(i), int(i) + bs) for i in idx)] += 1
    return n


# ---------------------------------------------------------------- drop fraction (gamma) ----


@pytest.mark.parametrize(
    "dims, spatial, bs, p",
    [(2, (48, 40), 7, 0.1), (2, (33, 33), 4, 0.2), (1, (300,), 9, 0.15), (3, (12, 14, 10), 3, 0.1)],
)
def test_drop_fraction_matches_gamma_formula(dims, spatial, bs, p):
    # gamma counts every unit once per covering seed, so sum_j gamma * n_j = p * numel exactly.
    # Overlapping blocks make the true expected fraction E = mean_j(1 - (1 - gamma)^n_j) a bit
    # lower: 0 <= p - E <= mean_j((gamma * n_j)^2) / 2 (second-order Taylor bound).
    gamma = drop_block_gamma(p, bs, spatial)
    n = _coverage_counts(spatial, bs)
    assert math.isclose(float((gamma * n).mean()), p, rel_tol=1e-9)
    expected = float((1 - (1 - gamma) ** n).mean())
    bias_bound = float(((gamma * n) ** 2).mean()) / 2
    assert 0 <= p - expected <= bias_bound
    maps = 64
    x = torch.ones(maps, 1, *spatial, dtype=torch.float64)
    for seed in range(3):
        y = FUNCS[dims](x, p, bs, generator=_gen(seed))
        per_map = _dropped(y).flatten(1).double().mean(1)  # maps are i.i.d.
        se = float(per_map.std()) / math.sqrt(maps)
        frac = float(per_map.mean())
        assert abs(frac - expected) < 5 * se, (frac, expected, se)
        assert abs(frac - p) < bias_bound + 5 * se


def test_corner_units_dropped_with_probability_gamma():
    # The top-left and the bottom-right unit are each covered by exactly one seed position, so
    # each is dropped with probability gamma: a one-unit shift of the blocks (the even-size
    # "same"-padding bug) would make one of the two corners never or always dropped.
    spatial, bs, p = (8, 12), 4, 0.5
    gamma = drop_block_gamma(p, bs, spatial)
    x = torch.ones(1000, 4, *spatial)
    for seed in range(3):
        d = _dropped(DF.drop_block2d(x, p, bs, generator=_gen(seed)))
        for corner in (d[..., 0, 0], d[..., -1, -1], d[..., 0, -1], d[..., -1, 0]):
            k, n = int(corner.sum()), corner.numel()
            assert scipy.stats.binomtest(k, n, gamma).pvalue > 1e-4, (k, n, gamma)


# ---------------------------------------------------------------- block geometry ------------


def _is_union_of_blocks(d, bs):
    """Morphological opening by a bs-sided box leaves d unchanged iff d is a union of boxes."""
    dims = d.dim()
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[dims]
    m = d.double()[None, None]
    fits = -pool(-m, kernel_size=bs, stride=1)  # 1 where a full box of dropped units starts
    cover = pool(F.pad(fits, [bs - 1] * (2 * dims)), kernel_size=bs, stride=1)
    return torch.equal(cover[0, 0].bool(), d)


@pytest.mark.parametrize("bs", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("spatial", [(20, 31), (31, 20)])
def test_isolated_blocks_are_exactly_block_sized(bs, spatial):
    # Sparse seeds: most dropped regions are single blocks, whose bounding box must be exactly
    # bs x bs and completely dropped (no truncation at borders, no off-by-one for even bs).
    x = torch.ones(40, 2, *spatial)
    singles = 0
    for seed in range(2):
        d = _dropped(DF.drop_block2d(x, 0.03, bs, generator=_gen(seed)))
        for m in d.reshape(-1, *spatial):
            assert _is_union_of_blocks(m, bs)
            labels, count = scipy.ndimage.label(m.numpy())
            for sl in scipy.ndimage.find_objects(labels):
                h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
                assert h >= bs and w >= bs
                if (labels[sl] > 0).sum() == bs * bs:
                    assert (h, w) == (bs, bs)
                    singles += 1
    assert singles > 50  # the test really saw isolated blocks


@pytest.mark.parametrize("dims, spatial, bs", [(1, (50,), 4), (1, (50,), 5), (3, (9, 10, 11), 2)])
def test_block_shape_1d_3d(dims, spatial, bs):
    x = torch.ones(30, 2, *spatial)
    d = _dropped(FUNCS[dims](x, 0.2, bs, generator=_gen(0)))
    assert d.any()
    for m in d.reshape(-1, *spatial):
        assert _is_union_of_blocks(m, bs)
    if dims == 1:  # every run of dropped positions is at least bs long
        labels, _ = scipy.ndimage.label(d.reshape(-1, *spatial)[0].numpy())
        for sl in scipy.ndimage.find_objects(labels):
            assert sl[0].stop - sl[0].start >= bs


def test_block_equal_to_map_size_drops_all_or_nothing():
    # bs == H == W: one seed position, gamma == p; all-dropped maps come out as zeros, no NaN.
    x = torch.randn(1, 1, 5, 5)
    for seed in range(5):
        y = DF.drop_block2d(x, 0.9, 5, generator=_gen(seed))
        assert torch.isfinite(y).all()
        assert torch.equal(y, torch.zeros_like(y)) or torch.equal(y, x)
    y = DF.drop_block2d(torch.randn(200, 1, 5, 5), 0.9, 5, generator=_gen(0))
    frac = float((y.flatten(1) == 0).all(1).double().mean())
    assert abs(frac - 0.9) < 5 * math.sqrt(0.09 / 200)


# ---------------------------------------------------------------- scaling and masks ---------


def test_rescale_by_count_over_count_ones():
    x = torch.ones(4, 3, 16, 16)
    y = DF.drop_block2d(x, 0.2, 3, generator=_gen(0))
    kept = int((y != 0).sum())
    assert 0 < kept < x.numel()
    assert torch.allclose(y[y != 0], torch.tensor(x.numel() / kept))
    assert math.isclose(float(y.sum()), x.numel(), rel_tol=1e-5)


def test_shared_channels_vs_per_channel():
    x = torch.ones(3, 6, 16, 20)
    shared = _dropped(DF.drop_block2d(x, 0.2, 3, shared_channels=True, generator=_gen(0)))
    assert shared.any()
    assert torch.equal(shared, shared[:, :1].expand_as(shared))
    assert not torch.equal(shared[0], shared[1])  # examples still differ
    per = _dropped(DF.drop_block2d(x, 0.2, 3, generator=_gen(0)))
    assert not torch.equal(per, per[:, :1].expand_as(per))


def test_masks_nested_across_rates_and_deterministic():
    x = torch.ones(4, 3, 24, 24)
    lo = _dropped(DF.drop_block2d(x, 0.1, 5, generator=_gen(7)))
    hi = _dropped(DF.drop_block2d(x, 0.3, 5, generator=_gen(7)))
    assert lo.sum() < hi.sum()
    assert not (lo & ~hi).any()
    again = DF.drop_block2d(x, 0.1, 5, generator=_gen(7))
    assert torch.equal(_dropped(again), lo)


def test_gradient_is_masked_and_scaled():
    x = torch.ones(2, 2, 10, 10, requires_grad=True)
    y = DF.drop_block2d(x, 0.2, 3, generator=_gen(1))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # x is ones: y is exactly the scaled mask


# ---------------------------------------------------------------- identity cases ------------


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_eval_and_p0_return_input(dims):
    x = torch.randn(2, 3, *([6] * dims))
    assert FUNCS[dims](x, 0.3, 3, training=False) is x
    assert FUNCS[dims](x, 0.0, 3) is x
    layer = LAYERS[dims](0.3, 3).eval()
    assert layer(x) is x


# ---------------------------------------------------------------- module and schedule -------


def test_module_delegates_and_repr():
    layer = dn.DropBlock2d(0.2, 3, shared_channels=True, generator=_gen(3))
    x = torch.ones(2, 4, 12, 12)
    expected = DF.drop_block2d(x, 0.2, 3, shared_channels=True, generator=_gen(3))
    assert torch.equal(layer(x), expected)
    assert repr(layer) == "DropBlock2d(p=0.2, block_size=3, shared_channels=True)"
    assert not dn.DropBlock2d.mean_preserving


def test_schedule_progression_and_state_dict():
    layer = dn.DropBlock2d(0.2, 3, schedule_steps=4)
    assert layer.current_p == 0.0
    x = torch.ones(64, 4, 16, 16)
    fracs = []
    for step in range(1, 7):
        y = layer(x)
        assert int(layer.schedule_step) == min(step, 4)
        assert math.isclose(layer.current_p, 0.2 * min(step, 4) / 4)
        fracs.append(float((y == 0).double().mean()))
    assert fracs[0] < fracs[1] < fracs[2] < fracs[3]  # 0.05, 0.1, 0.15, 0.2 with ~1e-3 noise
    assert "scheduled 4/4 (current p=0.2)" in repr(layer)
    layer.eval()
    layer(x)
    assert int(layer.schedule_step) == 4  # eval does not advance

    fresh = dn.DropBlock2d(0.2, 3, schedule_steps=10)
    fresh.train()(x)
    fresh(x)
    assert "scheduled 2/10 (current p=0.04)" in repr(fresh)
    restored = dn.DropBlock2d(0.2, 3, schedule_steps=10)
    restored.load_state_dict(fresh.state_dict())
    assert int(restored.schedule_step) == 2
    assert math.isclose(restored.current_p, 0.04)


# ---------------------------------------------------------------- errors --------------------


def test_errors():
    x = torch.randn(2, 3, 8, 10)
    with pytest.raises(ConfigError, match=r"drop_block2d expects a 4D input \(N, C, H, W\), got 3"):
        DF.drop_block2d(x[0], 0.1, 3)
    with pytest.raises(ConfigError, match=r"drop_block1d expects a 3D input \(N, C, L\), got 4D"):
        DF.drop_block1d(x, 0.1, 3)
    with pytest.raises(ConfigError, match=r"drop_block3d expects a 5D input"):
        DF.drop_block3d(x, 0.1, 3)
    # A block larger than the input is clamped in training and ignored in eval (issue 20,
    # test_layer_rules.py); the gamma formula itself still refuses it.
    with pytest.raises(ConfigError, match=r"block_size=9 does not fit the spatial size \(8, 10\); "
                       r"block_size must be <= 8"):
        drop_block_gamma(0.1, 9, (8, 10))
    with pytest.raises(ConfigError, match=r"block_size must be a positive integer, got 0"):
        DF.drop_block2d(x, 0.1, 0)
    with pytest.raises(ConfigError, match=r"block_size must be a positive integer, got 2.5"):
        dn.DropBlock2d(0.1, 2.5)
    with pytest.raises(ConfigError, match=r"p must be in \[0, 1\), got 1.0"):
        DF.drop_block2d(x, 1.0, 3)
    with pytest.raises(ConfigError, match=r"p must be in \[0, 1\), got -0.1"):
        dn.DropBlock1d(-0.1, 3)
    with pytest.raises(ConfigError, match=r"schedule_steps must be a non-negative integer, got -1"):
        dn.DropBlock2d(0.1, 3, schedule_steps=-1)
    with pytest.raises(ConfigError, match=r"with_noise must be true or false, got 1"):
        DF.drop_block2d(x, 0.1, 3, with_noise=1)
    with pytest.raises(ConfigError, match=r"with_noise must be true or false, got 'yes'"):
        dn.DropBlock2d(0.1, 3, with_noise="yes")
