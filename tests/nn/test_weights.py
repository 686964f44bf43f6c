"""DropConnect (Wan et al. 2013): weight masks, expectation, untouched weights, moment matching."""

import math

import pytest
import scipy.stats
import torch
from torch import nn

import droplab.functional as DF
import droplab.nn as dn
from droplab.errors import ConfigError


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _seeded(module_fn, seed=0):
    with torch.random.fork_rng():  # fixes the wrapped module's init without leaking the seed
        torch.manual_seed(seed)
        return module_fn()


# ---------------------------------------------------------------- functional ----------------


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_drop_connect_fraction_binomial(p):
    w = torch.ones(200, 50)
    for seed in range(3):
        out = DF.drop_connect(w, p, generator=_gen(seed))
        k = int((out == 0).sum())
        assert scipy.stats.binomtest(k, w.numel(), p).pvalue > 1e-4
        assert torch.allclose(out[out != 0], torch.tensor(1 / (1 - p)))


def test_drop_connect_identity_cases_and_nesting():
    w = torch.randn(5, 4)
    assert DF.drop_connect(w, 0.5, training=False) is w
    assert DF.drop_connect(w, 0.0) is w
    lo = DF.drop_connect(torch.ones(40, 40), 0.2, generator=_gen(1)) == 0
    hi = DF.drop_connect(torch.ones(40, 40), 0.4, generator=_gen(1)) == 0
    assert not (lo & ~hi).any() and lo.sum() < hi.sum()
    with pytest.raises(ConfigError, match=r"p must be in \[0, 1\), got 1.5"):
        DF.drop_connect(w, 1.5)


# ---------------------------------------------------------------- module: expectation -------


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: nn.Linear(12, 5), (3, 12)),
        (lambda: nn.Conv1d(3, 4, 3, padding=1), (2, 3, 9)),
        (lambda: nn.Conv2d(2, 3, 3, stride=2, padding=1, padding_mode="reflect"), (2, 2, 7, 8)),
        (lambda: nn.Conv3d(2, 2, 2), (1, 2, 4, 4, 5)),
    ],
)
def test_training_expectation_equals_module(make, shape):
    # E over masks of (M*W/(1-p)) v + b is W v + b. Per-output k-sigma bound from the sample
    # standard deviation of n i.i.d. forward calls.
    inner = _seeded(make)
    layer = dn.DropConnect(inner, 0.4, generator=_gen(0))
    x = torch.randn(*shape, generator=_gen(1))
    with torch.no_grad():
        target = inner(x)
        outs = torch.stack([layer(x) for _ in range(1000)])
    mean, se = outs.mean(0), outs.std(0) / math.sqrt(len(outs))
    assert ((mean - target).abs() <= 5 * se + 1e-6).all()
    layer.eval()
    assert torch.equal(layer(x), target)


def test_fresh_mask_per_call_shared_across_batch():
    inner = _seeded(lambda: nn.Linear(6, 4, bias=False))
    layer = dn.DropConnect(inner, 0.5, generator=_gen(0))
    row = torch.randn(1, 6, generator=_gen(2))
    y = layer(row.expand(8, 6))
    assert torch.equal(y, y[:1].expand_as(y))  # one mask for the whole batch
    assert not torch.equal(layer(row), layer(row))  # a new mask each call


# ---------------------------------------------------------------- module: weights/grads -----


@pytest.mark.parametrize("make, shape", [(lambda: nn.Linear(7, 3), (4, 7)),
                                         (lambda: nn.Conv2d(2, 3, 3), (2, 2, 6, 6))])
def test_wrapped_weights_untouched_and_grads_masked(make, shape):
    inner = _seeded(make)
    before = {k: v.detach().clone() for k, v in inner.state_dict().items()}
    p = 0.3
    gen = _gen(5)
    state = gen.get_state()
    layer = dn.DropConnect(inner, p, generator=gen)
    x = torch.randn(*shape, generator=_gen(6))
    layer(x).sum().backward()
    for k, v in inner.state_dict().items():
        assert torch.equal(v, before[k]), k
    # Reproduce the mask from the same generator state (contract: u = rand(weight.shape); u < p).
    gen2 = torch.Generator()
    gen2.set_state(state)
    dropped = torch.rand(inner.weight.shape, generator=gen2) < p
    assert dropped.any() and (~dropped).any()
    grad = inner.weight.grad
    assert torch.equal(grad[dropped], torch.zeros_like(grad[dropped]))
    # The kept-weight gradient is the plain layer's gradient scaled by 1/(1-p).
    plain = _seeded(make)
    plain.load_state_dict(before)
    plain(x).sum().backward()
    assert torch.allclose(grad[~dropped], plain.weight.grad[~dropped] / (1 - p), atol=1e-6)
    assert torch.allclose(inner.bias.grad, plain.bias.grad)  # the bias is never dropped


# ---------------------------------------------------------------- moment matching -----------


def test_moments_match_monte_carlo_preactivation():
    # Mean W v + b and variance p/(1-p) (W*W)(v*v): compare with n DropConnect samples.
    # Mean: 5 standard errors. Variance: se(s^2) = sqrt((m4 - s^4) / n) from the sample 4th
    # central moment, 5 of them.
    inner = _seeded(lambda: nn.Linear(30, 6))
    layer = dn.DropConnect(inner, 0.4, generator=_gen(0))
    x = torch.randn(2, 30, generator=_gen(3))
    mean, var = layer.preactivation_moments(x)
    n = 4000
    with torch.no_grad():
        s = torch.stack([layer(x) for _ in range(n)]).double()
    m, v = s.mean(0), s.var(0)
    m4 = ((s - m) ** 4).mean(0)
    assert ((m - mean.double()).abs() <= 5 * (v / n).sqrt()).all()
    assert ((v - var.double()).abs() <= 5 * ((m4 - v**2) / n).sqrt()).all()


def test_moments_conv_match_direct_formula():
    inner = _seeded(lambda: nn.Conv1d(2, 3, 3, padding=1))
    layer = dn.DropConnect(inner, 0.25)
    x = torch.randn(1, 2, 5, generator=_gen(0))
    mean, var = layer.preactivation_moments(x)
    # Direct sum over taps: var[o, t] = p/(1-p) * sum_{c,k} W[o,c,k]^2 xpad[c, t+k]^2.
    xp = nn.functional.pad(x, (1, 1))[0]
    w = inner.weight.detach()
    direct = torch.zeros(3, 5)
    for o in range(3):
        for t in range(5):
            direct[o, t] = (w[o] ** 2 * xp[:, t:t + 3] ** 2).sum() * (0.25 / 0.75)
    assert torch.allclose(var[0], direct, atol=1e-6)
    assert torch.allclose(mean, inner(x))


def test_moment_inference_identity_is_exact_mean():
    inner = _seeded(lambda: nn.Linear(5, 3))
    layer = dn.DropConnect(inner, 0.5, inference="moment").eval()
    x = torch.randn(4, 5, generator=_gen(0))
    assert torch.equal(layer(x), inner(x))
    assert dn.DropConnect.mean_preserving


def test_moment_inference_relu_matches_gaussian_closed_form():
    # E[relu(u)], u ~ N(mu, s^2), is mu*Phi(mu/s) + s*phi(mu/s); the layer averages `samples`
    # draws, so its error is within 5 * sd(relu(u)) / sqrt(samples).
    samples = 20000
    inner = _seeded(lambda: nn.Linear(10, 4))
    layer = dn.DropConnect(inner, 0.5, "moment", samples, torch.relu, generator=_gen(0)).eval()
    assert not layer.mean_preserving
    x = torch.randn(3, 10, generator=_gen(1))
    with torch.no_grad():
        mu, var = layer.preactivation_moments(x)
        out = layer(x)
    mu, s = mu.double(), var.double().sqrt()
    z = mu / s
    normal = torch.distributions.Normal(0.0, 1.0)
    e1 = mu * normal.cdf(z) + s * normal.log_prob(z).exp()
    e2 = (mu**2 + s**2) * normal.cdf(z) + mu * s * normal.log_prob(z).exp()
    sd = (e2 - e1**2).clamp_min(0).sqrt()
    assert ((out.double() - e1).abs() <= 5 * sd / math.sqrt(samples) + 1e-6).all()
    # and "mean" inference with the same activation is relu(W v + b), a different number
    layer.inference = "mean"
    assert torch.equal(layer(x), torch.relu(inner(x)))


def test_repr_and_errors():
    layer = dn.DropConnect(nn.Linear(3, 2), 0.2, "moment", 16, torch.tanh)
    assert "p=0.2, inference='moment', samples=16, activation=tanh" in repr(layer)
    assert "Linear(in_features=3" in repr(layer)
    with pytest.raises(ConfigError, match=r"DropConnect wraps nn.Linear, nn.Conv1d, nn.Conv2d or "
                       r"nn.Conv3d, got LSTM"):
        dn.DropConnect(nn.LSTM(3, 2), 0.2)
    with pytest.raises(ConfigError, match=r"inference must be one of 'mean', 'moment'; got 'momnet'"
                       r" \(did you mean 'moment'\?\)"):
        dn.DropConnect(nn.Linear(3, 2), 0.2, inference="momnet")
    with pytest.raises(ConfigError, match=r"samples must be a positive integer, got 0"):
        dn.DropConnect(nn.Linear(3, 2), 0.2, samples=0)
    with pytest.raises(ConfigError, match=r"p must be in \[0, 1\), got 1.0"):
        dn.DropConnect(nn.Linear(3, 2), 1.0)
    with pytest.raises(ConfigError, match=r"activation must be callable or None, got 'relu'"):
        dn.DropConnect(nn.Linear(3, 2), 0.2, activation="relu")
