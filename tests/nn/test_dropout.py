"""Unit-wise dropout: droplab.functional.unit and droplab.nn.dropout.

Statistical checks are seeded and run over several seeds. Binomial checks use scipy's exact
test at alpha = 1e-4: a correct implementation fails one given seed with probability 1e-4, so
the ~150 binomial checks here have < 2% chance of containing one unlucky seed. Mean checks use
k = 5 standard errors per element (two-sided normal tail 5.7e-7; with at most a few thousand
elements checked in total the family-wise false alarm rate stays below 1e-3).
"""

import math

import pytest
import torch

import droplab.functional as F
import droplab.nn as dn
from droplab.errors import ConfigError
from _layer_stats import ALPHA_PRIME, K_SIGMA, _alpha_coeffs, _assert_binomial, _gen

SEEDS = [0, 1, 2, 3, 4]


# Each case: a function (x, p, generator) -> y, an all-ones-like input builder, and a function
# returning one boolean "dropped" flag per independent draw (so the binomial n is right).
def _dropped_units(y):
    return y == 0


def _dropped_alpha(p):
    def dropped(y):
        a, b = _alpha_coeffs(p)
        return torch.isclose(y, torch.tensor(a * ALPHA_PRIME + b))

    return dropped


CASES = {
    "dropout": (
        lambda x, p, g: F.dropout(x, p, generator=g),
        lambda: torch.ones(100, 100),
        lambda y, p: _dropped_units(y),
    ),
    "dropout_classic": (
        lambda x, p, g: F.dropout(x, p, mode="classic", generator=g),
        lambda: torch.ones(100, 100),
        lambda y, p: _dropped_units(y),
    ),
    "dropout_shared_axes": (
        lambda x, p, g: F.dropout(x, p, shared_axes=(0, -1), generator=g),
        lambda: torch.ones(3, 2000, 4),
        lambda y, p: _dropped_units(y[0, :, 0]),
    ),
    "spatial_dropout": (
        lambda x, p, g: F.spatial_dropout(x, p, generator=g),
        lambda: torch.ones(40, 50, 3, 2),
        lambda y, p: _dropped_units(y[:, :, 0, 0]),
    ),
    "alpha_dropout": (
        lambda x, p, g: F.alpha_dropout(x, p, generator=g),
        lambda: torch.ones(100, 100),
        lambda y, p: _dropped_alpha(p)(y),
    ),
    "drop_path": (
        lambda x, p, g: F.drop_path(x, p, generator=g),
        lambda: torch.ones(3000, 2),
        lambda y, p: _dropped_units(y[:, 0]),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_drop_fraction_is_binomial(name, p):
    fn, make_x, dropped = CASES[name]
    for seed in SEEDS:
        flags = dropped(fn(make_x(), p, _gen(seed)), p)
        _assert_binomial(flags.sum(), flags.numel(), p)


@pytest.mark.parametrize("name", list(CASES))
def test_masks_nest_across_rates(name):
    fn, make_x, dropped = CASES[name]
    for seed in SEEDS:
        low = dropped(fn(make_x(), 0.2, _gen(seed)), 0.2)
        high = dropped(fn(make_x(), 0.5, _gen(seed)), 0.5)
        assert bool((low & ~high).sum() == 0), "a unit dropped at p=0.2 was kept at p=0.5"
        assert high.sum() > low.sum()


@pytest.mark.parametrize("name", list(CASES))
def test_same_seed_same_output_and_global_rng_untouched(name):
    fn, make_x, _ = CASES[name]
    state = torch.get_rng_state()
    a = fn(make_x(), 0.3, _gen(7))
    b = fn(make_x(), 0.3, _gen(7))
    c = fn(make_x(), 0.3, _gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), state)


# ---- expectations -------------------------------------------------------------------------

def _sample_mean(fn, x, n):
    """Mean of n independent training outputs, drawn in one call on a stacked input."""
    return fn(x.expand(n, *x.shape).contiguous()).mean(0)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_inverted_and_classic_match_their_eval_output_in_expectation(p):
    n = 4000
    for seed in SEEDS:
        x = torch.randn(32, generator=_gen(100 + seed), dtype=torch.float64)
        inv = _sample_mean(lambda t: F.dropout(t, p, generator=_gen(seed)), x, n)
        cls = _sample_mean(lambda t: F.dropout(t, p, mode="classic", generator=_gen(seed)), x, n)
        # Per element: inverted y = x r / (1-p) has sd |x| sqrt(p / (1-p)); classic y = x r has
        # sd |x| sqrt(p (1-p)).
        se_inv = x.abs() * math.sqrt(p / (1 - p)) / math.sqrt(n)
        se_cls = x.abs() * math.sqrt(p * (1 - p)) / math.sqrt(n)
        assert ((inv - F.dropout(x, p, training=False)).abs() <= K_SIGMA * se_inv).all()
        eval_cls = F.dropout(x, p, mode="classic", training=False)
        assert torch.allclose(eval_cls, (1 - p) * x)
        assert ((cls - eval_cls).abs() <= K_SIGMA * se_cls).all()


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_classic_is_inverted_times_keep_for_the_same_mask(p):
    x = torch.randn(50, 20, generator=_gen(0))
    inv = F.dropout(x, p, generator=_gen(3))
    cls = F.dropout(x, p, mode="classic", generator=_gen(3))
    torch.testing.assert_close(cls, inv * (1 - p))


@pytest.mark.parametrize(
    "fn",
    [
        lambda t, p, g: F.spatial_dropout(t, p, generator=g),
        lambda t, p, g: F.drop_path(t, p, generator=g),
        lambda t, p, g: F.gaussian_dropout(t, p, generator=g),
    ],
    ids=["spatial", "drop_path", "gaussian"],
)
@pytest.mark.parametrize("p", [0.2, 0.6])
def test_inverted_relatives_preserve_the_mean(fn, p):
    n = 4000
    for seed in SEEDS:
        x = torch.randn(4, 3, 2, generator=_gen(200 + seed), dtype=torch.float64)
        # Stack the n copies along the batch axis so every copy gets its own draw.
        big = x.repeat(n, 1, 1)
        y = fn(big, p, _gen(seed)).reshape(n, *x.shape)
        # All three have per-element sd |x| sqrt(p / (1-p)).
        se = x.abs() * math.sqrt(p / (1 - p)) / math.sqrt(n)
        assert ((y.mean(0) - x).abs() <= K_SIGMA * se).all()


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_gaussian_noise_has_mean_one_and_variance_p_over_keep(p):
    n = 40000
    var = p / (1 - p)
    for seed in SEEDS:
        noise = F.gaussian_dropout(torch.ones(n, dtype=torch.float64), p, generator=_gen(seed))
        assert abs(noise.mean() - 1) <= K_SIGMA * math.sqrt(var / n)
        # Sample variance of a normal: sd sigma^2 sqrt(2 / (n - 1)).
        assert abs(noise.var() - var) <= K_SIGMA * var * math.sqrt(2 / (n - 1))


def test_gaussian_noise_at_two_rates_differs_only_by_scale():
    x = torch.randn(200, generator=_gen(0)) + 3
    y1 = F.gaussian_dropout(x, 0.2, generator=_gen(5))
    y2 = F.gaussian_dropout(x, 0.5, generator=_gen(5))
    z1 = (y1 / x - 1) / math.sqrt(0.2 / 0.8)
    z2 = (y2 / x - 1) / math.sqrt(0.5 / 0.5)
    torch.testing.assert_close(z1, z2, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("p", [0.05, 0.1, 0.3])
def test_alpha_dropout_keeps_standardized_moments(p):
    n = 200_000
    for seed in SEEDS:
        x = torch.randn(n, generator=_gen(300 + seed), dtype=torch.float64)
        y = F.alpha_dropout(x, p, generator=_gen(seed))
        m, v = y.mean(), y.var()
        # Standard errors from the sample itself: sd/sqrt(n) for the mean and
        # sqrt((m4 - v^2) / n) for the variance (the output is a two-part mixture, not normal).
        m4 = ((y - m) ** 4).mean()
        assert abs(m) <= K_SIGMA * math.sqrt(v / n)
        assert abs(v - 1) <= K_SIGMA * math.sqrt((m4 - v**2) / n)


def test_alpha_dropout_is_not_mean_preserving_off_standardized_inputs():
    p, n = 0.2, 100_000
    a, b = _alpha_coeffs(p)
    x = torch.full((n,), 2.0, dtype=torch.float64)
    y = F.alpha_dropout(x, p, generator=_gen(0))
    expected = a * ((1 - p) * 2.0 + p * ALPHA_PRIME) + b
    sd = a * abs(2.0 - ALPHA_PRIME) * math.sqrt(p * (1 - p))
    assert abs(y.mean() - expected) <= K_SIGMA * sd / math.sqrt(n)
    assert abs(expected - 2.0) > 10 * sd / math.sqrt(n)
    assert dn.AlphaDropout.mean_preserving is False


# ---- mask structure -----------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(6, 40, 9), (6, 40, 5, 7), (6, 40, 3, 4, 5)])
def test_spatial_dropout_drops_whole_channels(shape):
    p = 0.5
    x = torch.rand(shape, generator=_gen(0)) + 0.5
    y = F.spatial_dropout(x, p, generator=_gen(1))
    ratio = (y / x).flatten(2)
    per_channel = ratio[:, :, :1]
    assert torch.allclose(ratio, per_channel.expand_as(ratio))
    scale = torch.tensor(1 / (1 - p))
    assert (torch.isclose(per_channel, torch.tensor(0.0)) | torch.isclose(per_channel, scale)).all()
    assert 0 < (per_channel == 0).sum() < per_channel.numel()


def test_spatial_dropout_h_not_equal_w_and_single_channel():
    y = F.spatial_dropout(torch.ones(30, 1, 2, 5), 0.5, generator=_gen(0))
    flat = y.flatten(1)
    assert ((flat == 0).all(1) | (flat == 2).all(1)).all()


def test_shared_axes_share_one_mask_value():
    x = torch.ones(5, 6, 7)
    y = F.dropout(x, 0.5, shared_axes=(1,), generator=_gen(0))
    assert torch.equal(y, y[:, :1, :].expand_as(y))
    assert not torch.equal(y, y[:1].expand_as(y))


def test_negative_shared_axes_equal_positive_ones_and_int_is_accepted():
    x = torch.randn(4, 5, 6)
    a = F.dropout(x, 0.4, shared_axes=(-1,), generator=_gen(2))
    b = F.dropout(x, 0.4, shared_axes=(2,), generator=_gen(2))
    c = F.dropout(x, 0.4, shared_axes=2, generator=_gen(2))
    assert torch.equal(a, b) and torch.equal(b, c)


def test_drop_path_drops_whole_samples():
    p = 0.4
    x = torch.rand(500, 3, 4, generator=_gen(0)) + 0.5
    y = F.drop_path(x, p, generator=_gen(1))
    ratio = (y / x).flatten(1)
    dropped = (ratio == 0).all(1)
    kept = torch.isclose(ratio, torch.tensor(1 / (1 - p))).all(1)
    assert (dropped | kept).all()


def test_drop_path_without_scaling_keeps_values():
    x = torch.rand(200, 5, generator=_gen(0)) + 0.5
    y = F.drop_path(x, 0.3, scale_by_keep=False, generator=_gen(1))
    kept = (y != 0).all(1)
    assert torch.equal(y[kept], x[kept])
    layer = dn.DropPath(0.3, scale_by_keep=False)
    assert layer.mean_preserving is False
    assert dn.DropPath(0.3).mean_preserving is True


# ---- gradients ----------------------------------------------------------------------------

GRAD_CASES = {
    "dropout": (lambda x, p, g: F.dropout(x, p, generator=g), lambda p: 1 / (1 - p)),
    "dropout_classic": (
        lambda x, p, g: F.dropout(x, p, mode="classic", generator=g),
        lambda p: 1.0,
    ),
    "spatial_dropout": (
        lambda x, p, g: F.spatial_dropout(x, p, generator=g),
        lambda p: 1 / (1 - p),
    ),
    "drop_path": (lambda x, p, g: F.drop_path(x, p, generator=g), lambda p: 1 / (1 - p)),
    "alpha_dropout": (
        lambda x, p, g: F.alpha_dropout(x, p, generator=g),
        lambda p: _alpha_coeffs(p)[0],
    ),
}


@pytest.mark.parametrize("name", list(GRAD_CASES))
@pytest.mark.parametrize("p", [0.3, 0.7])
def test_gradient_flows_only_through_kept_units(name, p):
    fn, scale = GRAD_CASES[name]
    x = (torch.rand(20, 6, 4, 3, generator=_gen(0)) + 0.5).requires_grad_()
    y = fn(x, p, _gen(1))
    y.sum().backward()
    # Recover the mask from a second call with the same seed on a tensor of ones.
    ref = fn(torch.ones_like(x), p, _gen(1))
    if name == "alpha_dropout":
        a, b = _alpha_coeffs(p)
        dropped = torch.isclose(ref, torch.tensor(a * ALPHA_PRIME + b))
    else:
        dropped = ref == 0
    assert 0 < dropped.sum() < dropped.numel()
    assert torch.equal(x.grad[dropped], torch.zeros_like(x.grad[dropped]))
    torch.testing.assert_close(x.grad[~dropped], torch.full_like(x.grad[~dropped], scale(p)))


def test_gaussian_gradient_is_the_noise():
    x = (torch.rand(100, generator=_gen(0)) + 0.5).requires_grad_()
    y = F.gaussian_dropout(x, 0.4, generator=_gen(1))
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y / x).detach())


# ---- edge cases: eval, p = 0, p close to 1 -----------------------------------------------

ALL_FUNCTIONS = {
    "dropout": lambda x, p, **kw: F.dropout(x, p, **kw),
    "spatial_dropout": lambda x, p, **kw: F.spatial_dropout(x, p, **kw),
    "gaussian_dropout": lambda x, p, **kw: F.gaussian_dropout(x, p, **kw),
    "alpha_dropout": lambda x, p, **kw: F.alpha_dropout(x, p, **kw),
    "drop_path": lambda x, p, **kw: F.drop_path(x, p, **kw),
}

ALL_MODULES = {
    "Dropout": dn.Dropout,
    "SpatialDropout": dn.SpatialDropout,
    "GaussianDropout": dn.GaussianDropout,
    "AlphaDropout": dn.AlphaDropout,
    "DropPath": dn.DropPath,
}

_to_function = {
    "Dropout": "dropout",
    "SpatialDropout": "spatial_dropout",
    "GaussianDropout": "gaussian_dropout",
    "AlphaDropout": "alpha_dropout",
    "DropPath": "drop_path",
}


@pytest.mark.parametrize("name", list(ALL_FUNCTIONS))
def test_eval_and_p_zero_return_the_input_object(name):
    fn = ALL_FUNCTIONS[name]
    x = torch.randn(3, 4, 5)
    assert fn(x, 0.5, training=False) is x
    assert fn(x, 0.0) is x
    assert fn(x, 0, training=True, generator=_gen(0)) is x


@pytest.mark.parametrize("name", list(ALL_MODULES))
def test_module_eval_and_p_zero_return_the_input_object(name):
    x = torch.randn(3, 4, 5)
    layer = ALL_MODULES[name](0.5).eval()
    assert layer(x) is x
    assert ALL_MODULES[name](0.0)(x) is x


def test_classic_eval_scales_and_p_zero_is_identity():
    x = torch.randn(3, 4)
    torch.testing.assert_close(F.dropout(x, 0.3, mode="classic", training=False), 0.7 * x)
    assert F.dropout(x, 0.0, mode="classic", training=False) is x
    layer = dn.Dropout(0.3, mode="classic").eval()
    torch.testing.assert_close(layer(x), 0.7 * x)


@pytest.mark.parametrize("name", list(ALL_FUNCTIONS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_p_close_to_one_is_finite(name, dtype):
    x = torch.randn(200, 8, 3, generator=_gen(0)).to(dtype)
    y = ALL_FUNCTIONS[name](x, 0.999, generator=_gen(1))
    assert torch.isfinite(y).all()


def test_p_close_to_one_scales_the_survivors():
    x = torch.ones(100_000)
    y = F.dropout(x, 0.999, generator=_gen(0))
    kept = y != 0
    assert 0 < kept.sum() < 1000
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1000.0))


@pytest.mark.parametrize("name", list(ALL_FUNCTIONS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_dtype_and_device_are_preserved_and_masks_do_not_depend_on_dtype(name, dtype):
    x32 = torch.rand(16, 4, 3, generator=_gen(0)) + 0.5
    x = x32.to(dtype)
    y = ALL_FUNCTIONS[name](x, 0.4, generator=_gen(1))
    y32 = ALL_FUNCTIONS[name](x32, 0.4, generator=_gen(1))
    assert y.dtype == dtype and y.device == x.device and y.shape == x.shape
    if name == "gaussian_dropout":
        torch.testing.assert_close(y.float() / x.float(), y32 / x32, rtol=2e-2, atol=2e-2)
    elif name == "alpha_dropout":
        torch.testing.assert_close(y.float(), y32, rtol=2e-2, atol=2e-2)
    else:
        assert torch.equal(y == 0, y32 == 0)


@pytest.mark.parametrize("name", list(ALL_MODULES))
def test_module_matches_function_and_uses_its_generator(name):
    x = torch.rand(8, 5, 3, generator=_gen(0))
    a = ALL_MODULES[name](0.4, generator=_gen(9))(x)
    b = ALL_FUNCTIONS[_to_function[name]](x, 0.4, generator=_gen(9))
    assert torch.equal(a, b)



def test_module_with_mode_and_shared_axes_matches_function():
    x = torch.rand(8, 5, 3, generator=_gen(0))
    layer = dn.Dropout(0.3, mode="classic", shared_axes=(1, -1), generator=_gen(2))
    expected = F.dropout(x, 0.3, mode="classic", shared_axes=(1, 2), generator=_gen(2))
    assert torch.equal(layer(x), expected)


# ---- errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(ALL_FUNCTIONS))
@pytest.mark.parametrize("bad", [1.0, 1.2, -0.1])
def test_functions_reject_bad_p(name, bad):
    with pytest.raises(ConfigError, match=rf"^p must be in \[0, 1\), got {bad}$"):
        ALL_FUNCTIONS[name](torch.ones(2, 3, 4), bad)


@pytest.mark.parametrize("name", list(ALL_MODULES))
@pytest.mark.parametrize("bad", [1.0, -0.5, "0.5"])
def test_modules_reject_bad_p(name, bad):
    with pytest.raises(ConfigError, match=r"^p must be"):
        ALL_MODULES[name](bad)


def test_mode_must_be_known_with_hint():
    msg = r"mode must be one of 'inverted', 'classic'; got 'clasic' \(did you mean 'classic'\?\)"
    with pytest.raises(ConfigError, match=msg):
        F.dropout(torch.ones(2), 0.5, mode="clasic")
    with pytest.raises(ConfigError, match=msg):
        dn.Dropout(0.5, mode="clasic")


def test_shared_axes_out_of_range():
    with pytest.raises(
        ConfigError,
        match=r"shared_axes entry 3 is out of range for a 3D input of shape \(2, 3, 4\) "
        r"\(expected an axis in \[-3, 2\]\)",
    ):
        F.dropout(torch.ones(2, 3, 4), 0.5, shared_axes=(3,))
    with pytest.raises(ConfigError, match=r"shared_axes entry -4 is out of range"):
        dn.Dropout(0.5, shared_axes=-4)(torch.ones(2, 3, 4))


def test_shared_axes_duplicates():
    with pytest.raises(
        ConfigError,
        match=r"shared_axes \(-1, 2\) names dimension 2 more than once for a 3D input",
    ):
        F.dropout(torch.ones(2, 3, 4), 0.5, shared_axes=(-1, 2))
    with pytest.raises(ConfigError, match=r"shared_axes must not repeat an axis, got \(1, 1\)"):
        dn.Dropout(0.5, shared_axes=(1, 1))


@pytest.mark.parametrize("bad", ["1", 1.0, (0, 1.5), (True,), None])
def test_shared_axes_types(bad):
    with pytest.raises(ConfigError, match=r"shared_axes must"):
        dn.Dropout(0.5, shared_axes=bad)


def _re_shape(shape):
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


@pytest.mark.parametrize("shape", [(4, 5), (1, 2, 3, 4, 5, 6)])
def test_spatial_dropout_rank_error_states_layout_and_shape(shape):
    ndim = len(shape)
    msg = (
        r"spatial_dropout expects a 3D or 4D or 5D input \(N, C, L\), \(N, C, H, W\) or "
        rf"\(N, C, D, H, W\), got {ndim}D input of shape {_re_shape(shape)}"
    )
    with pytest.raises(ConfigError, match=msg):
        F.spatial_dropout(torch.ones(shape), 0.5)
    with pytest.raises(ConfigError, match=msg):
        dn.SpatialDropout(0.5)(torch.ones(shape))



def test_spatial_dropout_rank_is_checked_in_eval_too():
    with pytest.raises(ConfigError, match=r"got 2D input"):
        F.spatial_dropout(torch.ones(4, 5), 0.5, training=False)


def test_drop_path_rejects_scalars():
    with pytest.raises(
        ConfigError, match=r"drop_path expects an input with a batch dimension \(N, \*\), got 0D"
    ):
        F.drop_path(torch.tensor(1.0), 0.5)


# ---- repr ---------------------------------------------------------------------------------

def test_extra_repr_shows_every_behavioural_argument():
    assert repr(dn.Dropout(0.2)) == "Dropout(p=0.2, mode='inverted', shared_axes=())"
    assert "mode='classic'" in repr(dn.Dropout(0.2, mode="classic"))
    assert "shared_axes=(1, -1)" in repr(dn.Dropout(0.2, shared_axes=(1, -1)))
    assert repr(dn.SpatialDropout(0.1)) == "SpatialDropout(p=0.1)"
    assert repr(dn.GaussianDropout(0.1)) == "GaussianDropout(p=0.1)"
    assert repr(dn.AlphaDropout(0.05)) == "AlphaDropout(p=0.05)"
    assert repr(dn.DropPath(0.1, scale_by_keep=False)) == "DropPath(p=0.1, scale_by_keep=False)"
