"""Peer features (issue 20, item 9): DropPath mode="batch" (torchvision), DropBlock with_noise
(timm), FeatureAlphaDropout (torch), GaussianNoise (Keras), shared axes on AlphaDropout (Keras'
noise_shape).

As in test_dropout.py: binomial checks use scipy's exact test at alpha = 1e-4 over several seeds;
moment checks use k = 5 standard errors.
"""

import math

import pytest
import torch

import droplab.functional as DF
import droplab.nn as dn
from droplab.errors import ConfigError
from _layer_stats import ALPHA_PRIME, K_SIGMA, _alpha_coeffs, _assert_binomial, _gen

SEEDS = [0, 1, 2]


# ------------------------------------------------------------------ DropPath mode="batch" ----


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_drop_path_batch_mode_drops_the_whole_batch_at_rate_p(seed, p):
    g, x, calls = _gen(seed), torch.ones(6, 3, 2), 2000
    outs = torch.stack([DF.drop_path(x, p, mode="batch", generator=g) for _ in range(calls)])
    per_call = outs.flatten(1)
    dropped = (per_call == 0).all(1)
    # one draw per call: every element of a call is 0, or every one is 1 / (1 - p)
    assert torch.equal(dropped | (per_call == 1 / (1 - p)).all(1), torch.ones(calls, dtype=bool))
    _assert_binomial(dropped.sum(), calls, p)


def test_drop_path_row_mode_is_the_default_and_draws_per_sample():
    x = torch.ones(4000, 3)
    y = dn.DropPath(0.3, generator=_gen(0))(x)
    assert torch.equal(y, DF.drop_path(x, 0.3, mode="row", generator=_gen(0)))
    per_sample = (y == 0).all(1)
    assert 0 < per_sample.sum() < 4000  # samples differ: not one draw for the batch
    _assert_binomial(per_sample.sum(), 4000, 0.3)


def test_drop_path_batch_mode_edges():
    x = torch.randn(5, 4, generator=_gen(0))
    layer = dn.DropPath(0.4, mode="batch", scale_by_keep=False, generator=_gen(3))
    assert layer.eval()(x) is x
    assert DF.drop_path(x, 0.0, mode="batch") is x
    outs = [layer.train()(x) for _ in range(50)]
    assert all(torch.equal(y, x) or torch.equal(y, torch.zeros_like(x)) for y in outs)  # unscaled
    assert repr(layer) == "DropPath(p=0.4, scale_by_keep=False, mode='batch')"
    assert repr(dn.DropPath(0.4)) == "DropPath(p=0.4, scale_by_keep=True)"
    with pytest.raises(ConfigError, match=r"mode must be one of 'row', 'batch'; got 'rows'"):
        dn.DropPath(0.1, mode="rows")
    with pytest.raises(ConfigError, match=r"mode must be one of 'row', 'batch'; got 'sample'"):
        DF.drop_path(x, 0.1, mode="sample")
    with pytest.raises(ConfigError, match=r"drop_path expects an input with a batch dimension"):
        DF.drop_path(torch.tensor(1.0), 0.1, mode="batch")


# ------------------------------------------------------------------ DropBlock with_noise -----


@pytest.mark.parametrize("seed", SEEDS)
def test_drop_block_with_noise_fills_dropped_units_with_standard_normals(seed):
    x = torch.full((16, 8, 24, 24), 3.0)
    plain = DF.drop_block2d(x, 0.2, 5, generator=_gen(seed))
    y = DF.drop_block2d(x, 0.2, 5, with_noise=True, generator=_gen(seed))
    dropped = plain == 0
    # the same mask as without noise; kept units unscaled (timm: no renormalisation with noise)
    assert torch.equal(y[~dropped], x[~dropped])
    noise = y[dropped].double()
    n = noise.numel()
    assert n > 10_000
    assert abs(noise.mean().item()) < K_SIGMA / math.sqrt(n)
    assert abs(noise.var().item() - 1) < K_SIGMA * math.sqrt(2 / n)  # var of s^2 is 2/n


def test_drop_block_with_noise_edges():
    x = torch.randn(2, 3, 9, 11, generator=_gen(0))
    layer = dn.DropBlock2d(0.3, 3, with_noise=True, generator=_gen(1))
    assert layer.eval()(x) is x
    assert DF.drop_block2d(x, 0.0, 3, with_noise=True) is x
    assert repr(layer) == "DropBlock2d(p=0.3, block_size=3, with_noise=True)"
    y1 = DF.drop_block1d(torch.ones(4, 2, 50), 0.3, 4, with_noise=True, generator=_gen(2))
    y3 = DF.drop_block3d(torch.ones(2, 2, 6, 6, 6), 0.3, 3, with_noise=True, generator=_gen(2))
    assert (y1 != 1).any() and (y3 != 1).any()
    shared = DF.drop_block2d(
        torch.ones(4, 3, 12, 12), 0.3, 3, shared_channels=True, with_noise=True, generator=_gen(4)
    )
    dropped = shared != 1
    assert torch.equal(dropped, dropped[:, :1].expand_as(dropped))  # one mask for all channels
    assert not torch.equal(shared[:, 0], shared[:, 1])  # noise drawn per unit


# ------------------------------------------------------------------ FeatureAlphaDropout -----


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", [(64, 32, 7), (32, 32, 4, 5), (16, 16, 2, 3, 4)])
def test_feature_alpha_dropout_drops_whole_channels(seed, shape):
    p = 0.3
    a, b = _alpha_coeffs(p)
    x = torch.randn(shape, generator=_gen(100 + seed))
    y = DF.feature_alpha_dropout(x, p, generator=_gen(seed))
    dims = tuple(range(2, x.dim()))
    dropped_units = torch.isclose(y, torch.tensor(a * ALPHA_PRIME + b), atol=1e-6)
    kept_units = torch.isclose(y, x * a + b, atol=1e-6)
    dropped = dropped_units.all(dim=dims)
    assert torch.equal(dropped | kept_units.all(dim=dims), torch.ones_like(dropped))
    _assert_binomial(dropped.sum(), dropped.numel(), p)


def test_feature_alpha_dropout_keeps_standardized_moments():
    x = torch.randn(256, 64, 8, 8, generator=_gen(0))
    ys = [DF.feature_alpha_dropout(x, 0.2, generator=_gen(s)) for s in SEEDS]
    y = torch.stack(ys).double()
    # 3*256*64 channel draws: the channel-level noise dominates; 0.02 is > 5 of its sd (~0.004)
    assert abs(y.mean().item()) < 0.02 and abs(y.var().item() - 1) < 0.03


def test_feature_alpha_dropout_matches_torch_on_the_constant_values():
    # torch's feature_alpha_dropout: a dropped channel of any input becomes the same constant,
    # a kept one x * a + b; the two constants agree with droplab's.
    p = 0.25
    x = torch.randn(400, 10, 3, generator=_gen(0))
    torch.manual_seed(0)
    t = torch.nn.functional.feature_alpha_dropout(x, p, training=True)
    d = DF.feature_alpha_dropout(x, p, generator=_gen(1))
    a, b = _alpha_coeffs(p)
    for out in (t, d):
        dropped = torch.isclose(out, torch.tensor(a * ALPHA_PRIME + b), atol=1e-5).all(-1)
        kept = torch.isclose(out, x * a + b, atol=1e-5).all(-1)
        assert dropped.any() and kept.any() and bool((dropped | kept).all())


def test_feature_alpha_dropout_edges_and_errors():
    x = torch.randn(2, 3, 4, generator=_gen(0))
    layer = dn.FeatureAlphaDropout(0.2, generator=_gen(1))
    assert layer.eval()(x) is x and DF.feature_alpha_dropout(x, 0.0) is x
    assert dn.FeatureAlphaDropout.mean_preserving is False
    assert repr(layer) == "FeatureAlphaDropout(p=0.2)"
    with pytest.raises(
        ConfigError,
        match=r"feature_alpha_dropout expects a 3D or 4D or 5D input .* got 2D input of shape",
    ):
        DF.feature_alpha_dropout(torch.randn(4, 5), 0.2)
    with pytest.raises(ConfigError, match=r"p must be in \[0, 1\), got 1.0"):
        dn.FeatureAlphaDropout(1.0)


# ------------------------------------------------------------------ GaussianNoise ------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("stddev", [0.1, 2.0])
def test_gaussian_noise_adds_zero_mean_noise_of_the_given_stddev(seed, stddev):
    x = torch.randn(200, 500, generator=_gen(50 + seed))
    noise = (DF.gaussian_noise(x, stddev, generator=_gen(seed)) - x).double()
    n = noise.numel()
    assert abs(noise.mean().item()) < K_SIGMA * stddev / math.sqrt(n)
    # sd of the sample sd is about stddev / sqrt(2n); float32 rounding of x + noise adds < 1e-6
    assert abs(noise.std().item() - stddev) < K_SIGMA * stddev / math.sqrt(2 * n) + 1e-6


def test_gaussian_noise_edges_and_errors():
    x = torch.randn(3, 4, generator=_gen(0))
    layer = dn.GaussianNoise(0.5, generator=_gen(1))
    assert layer.eval()(x) is x and DF.gaussian_noise(x, 0.0) is x
    assert layer.p is None and layer.mean_preserving
    assert repr(layer) == "GaussianNoise(stddev=0.5)"
    y16 = DF.gaussian_noise(x.to(torch.bfloat16), 0.5, generator=_gen(1))
    y32 = DF.gaussian_noise(x, 0.5, generator=_gen(1))
    assert y16.dtype == torch.bfloat16
    torch.testing.assert_close(y16.float(), y32, rtol=2e-2, atol=2e-2)  # float32 draws in both
    with pytest.raises(ConfigError, match=r"stddev must be a finite number >= 0, got -0.1"):
        dn.GaussianNoise(-0.1)
    with pytest.raises(ConfigError, match=r"stddev must be a finite number >= 0, got nan"):
        DF.gaussian_noise(x, float("nan"))


# ------------------------------------------------------------------ AlphaDropout shared axes -


@pytest.mark.parametrize("seed", SEEDS)
def test_alpha_dropout_shared_axes_share_one_draw(seed):
    p = 0.3
    a, b = _alpha_coeffs(p)
    x = torch.randn(64, 10, 32, generator=_gen(10 + seed))
    y = dn.AlphaDropout(p, shared_axes=1, generator=_gen(seed))(x)
    dropped = torch.isclose(y, torch.tensor(a * ALPHA_PRIME + b), atol=1e-6)
    assert torch.equal(dropped, dropped[:, :1].expand_as(dropped))  # same at every step
    kept = torch.isclose(y, x * a + b, atol=1e-6)
    assert bool((dropped | kept).all())
    _assert_binomial(dropped[:, 0].sum(), 64 * 32, p)


def test_alpha_dropout_shared_axes_keep_standardized_moments():
    x = torch.randn(512, 16, 64, generator=_gen(0))
    y = torch.stack([DF.alpha_dropout(x, 0.1, shared_axes=(1,), generator=_gen(s)) for s in SEEDS])
    assert abs(y.double().mean().item()) < 0.02 and abs(y.double().var().item() - 1) < 0.03


def test_alpha_dropout_shared_axes_edges_and_errors():
    x = torch.randn(4, 5, 6, generator=_gen(0))
    assert dn.AlphaDropout(0.2, shared_axes=(0, 2)).eval()(x) is x
    assert repr(dn.AlphaDropout(0.2, shared_axes=-1)) == "AlphaDropout(p=0.2, shared_axes=(-1,))"
    assert repr(dn.AlphaDropout(0.2)) == "AlphaDropout(p=0.2)"
    # all axes shared: one draw for the whole tensor
    y = DF.alpha_dropout(x, 0.5, shared_axes=(0, 1, 2), generator=_gen(3))
    a, b = _alpha_coeffs(0.5)
    all_off = torch.full_like(x, a * ALPHA_PRIME + b)
    assert torch.allclose(y, x * a + b) or torch.allclose(y, all_off)
    with pytest.raises(ConfigError, match=r"shared_axes entry 3 is out of range for a 3D input"):
        DF.alpha_dropout(x, 0.2, shared_axes=3)
    with pytest.raises(ConfigError, match=r"shared_axes must contain only ints, got 'a'"):
        dn.AlphaDropout(0.2, shared_axes=("a",))
