"""Cached, batched and per-function MC inference: bitwise the plain loop of T passes.

``cache=False`` is the plain loop of T full forward passes (each pass drawing from its own
seeded streams); ``cache=True`` computes the prefix before the first stochastic layer once and
stacks the remaining passes. Under one seed both must agree bit for bit, on every kind of
model: Sequential, custom forward, droplab layers with their own generator, a skip connection
from the cached prefix into the stochastic part (falls back), input dropout (nothing cached),
tiny memory budgets (many groups), uneven last chunks.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import droplab.nn as dn
from droplab.errors import ConfigError
from droplab.inference import mc_predict

FIELDS = ("mean", "variance", "predictive_entropy", "expected_entropy", "mutual_information", "draws")


def _same(a, b):
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.shape == y.shape and torch.equal(x, y), name


def _seeded(factory, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def _cnn():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 8, 3, padding=1),
        nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.5), nn.Linear(8 * 7 * 7, 16),
        nn.ReLU(), dn.Dropout(0.3), nn.Linear(16, 5),
    ).eval()


class _Custom(nn.Module):
    """A custom forward with root-level ops between the prefix and the stochastic part."""

    def __init__(self, skip: bool = False, generator=None):
        super().__init__()
        self.skip = skip
        self.a, self.b = nn.Linear(6, 12), nn.Linear(12, 12)
        self.drop = dn.Dropout(0.5, generator=generator)
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        h1 = torch.tanh(self.a(x))
        h2 = self.b(h1).relu()
        z = self.drop(h2 * 2)
        if self.skip:  # an earlier cached output reused after the stochastic layer
            z = z + h1
        return self.head(z)


class _Guarded(nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.head = nn.Linear(6, 10), nn.Linear(10, 3)

    def forward(self, x):
        return self.head(F.dropout(self.body(x).relu(), 0.4, self.training))


class _InPlace(nn.Module):
    """Writes into a cached output at the root: the cache must notice and stand down."""

    def __init__(self):
        super().__init__()
        self.a, self.drop, self.head = nn.Linear(6, 10), nn.Dropout(0.5), nn.Linear(10, 3)

    def forward(self, x):
        h = self.a(x)
        h.mul_(2)
        return self.head(self.drop(h))


MODELS = {
    "cnn": (_cnn, (37, 1, 28, 28)),
    "custom": (lambda: _Custom(), (45, 6)),
    "skip": (lambda: _Custom(skip=True), (45, 6)),
    "own_generator": (lambda: _Custom(generator=torch.Generator().manual_seed(3)), (45, 6)),
    "input_dropout": (lambda: nn.Sequential(nn.Dropout(0.2), nn.Linear(6, 8), nn.ReLU(), dn.GaussianDropout(0.3), nn.Linear(8, 3)), (45, 6)),
    "guarded_functional": (lambda: _Guarded(), (45, 6)),
    "inplace": (lambda: _InPlace(), (45, 6)),
    "inplace_dropout": (lambda: nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.5, inplace=True), nn.Linear(8, 3)), (45, 6)),
}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("mode", ["example", "function"])
def test_cached_and_batched_is_bitwise_the_plain_loop(name, mode):
    factory, shape = MODELS[name]
    model = _seeded(factory)
    x = _seeded(lambda: torch.randn(shape), 1)
    kw = dict(samples=12, seed=7, batch_size=16, mode=mode, draws=True)
    fast = mc_predict(model, x, **kw)
    slow = mc_predict(model, x, cache=False, **kw)
    _same(fast, slow)
    assert slow.cached == ()
    tiny = mc_predict(model, x, memory_budget=1, **kw)  # one pass per group
    _same(tiny, slow)
    other = mc_predict(model, x, **{**kw, "seed": 8})
    assert not torch.equal(other.mean, fast.mean)


def test_what_is_cached():
    cnn = _seeded(_cnn)
    x = torch.randn(10, 1, 28, 28)
    assert mc_predict(cnn, x, 4, seed=0).cached == ("0", "1", "2", "3", "4", "5", "6")
    assert mc_predict(_seeded(_Custom), torch.randn(10, 6), 4, seed=0).cached == ("a", "b")
    # the skip connection needs every cached output stacked: still cached, verified
    assert mc_predict(_seeded(lambda: _Custom(True)), torch.randn(10, 6), 4, seed=0).cached == ("a", "b")
    assert mc_predict(_seeded(_InPlace), torch.randn(10, 6), 4, seed=0).cached == ()
    first = nn.Sequential(nn.Dropout(0.2), nn.Linear(6, 3))
    assert mc_predict(first, torch.randn(10, 6), 4, seed=0).cached == ()
    # without the probe an unguarded random call could hide in the prefix: nothing is cached
    assert mc_predict(cnn, x, 4, seed=0, detect=False).cached == ()


class _Unguarded(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.head = nn.Linear(6, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.head(F.dropout(self.a(x), 0.5))  # random even in eval mode


def test_unguarded_functional_dropout_switches_the_cache_off():
    model = _seeded(_Unguarded)
    x = torch.randn(20, 6)
    fast = mc_predict(model, x, 6, seed=1, draws=True)
    assert fast.cached == ()
    _same(fast, mc_predict(model, x, 6, seed=1, cache=False, draws=True))


def test_seeded_runs_leave_the_global_rng_and_layer_generators_alone():
    own = torch.Generator().manual_seed(5)
    model = _seeded(lambda: _Custom(generator=own))
    x = torch.randn(9, 6)
    state, gstate = torch.get_rng_state(), own.get_state()
    mc_predict(model, x, 5, seed=2)
    assert torch.equal(torch.get_rng_state(), state) and torch.equal(own.get_state(), gstate)
    assert model.drop.generator is own and "forward" not in model.a.__dict__


def test_function_mode_shares_one_mask_per_pass_across_all_inputs_and_chunks():
    model = nn.Sequential(nn.Identity(), dn.Dropout(0.5)).eval()
    x = torch.ones(40, 30)
    draws = mc_predict(model, x, 25, seed=0, task="regression", mode="function", batch_size=7, draws=True).draws
    assert torch.equal(draws, draws[:, :1].expand_as(draws))  # every example, every chunk
    # a different mask per pass: 25 masks of 30 units; keep rate 0.5 within 5 binomial SDs
    kept = (draws[:, 0] > 0).double()
    assert len({tuple(r.tolist()) for r in kept}) == 25
    assert abs(kept.mean().item() - 0.5) < 5 * (0.25 / kept.numel()) ** 0.5
    per_example = mc_predict(model, x, 3, seed=0, task="regression", draws=True).draws
    assert not torch.equal(per_example[:, 0], per_example[:, 1])


def test_function_mode_with_dropconnect_reuses_the_weight_mask_in_every_chunk():
    model = _seeded(lambda: nn.Sequential(dn.DropConnect(nn.Linear(5, 4), 0.5))).eval()
    x = torch.randn(1, 5).repeat(20, 1)
    draws = mc_predict(model, x, 6, seed=0, task="regression", mode="function", batch_size=3, draws=True).draws
    # the same weights everywhere (rounding aside: chunks of 3 and 2 rows take other kernels)
    torch.testing.assert_close(draws, draws[:, :1].expand_as(draws), rtol=1e-6, atol=1e-6)
    assert not torch.equal(draws[0, 0], draws[1, 0])


def test_function_mode_refuses_layers_that_are_not_elementwise():
    class Mixing(dn.Dropout):  # a "dropout" whose output mixes features
        def forward(self, x):
            return super().forward(x).cumsum(-1) ** 2

    model = nn.Sequential(nn.Linear(4, 4), Mixing(0.5))
    with pytest.raises(ConfigError, match="b \\+ a \\* x element by element"):
        mc_predict(model, torch.randn(5, 4), 3, seed=0, task="regression", mode="function")
    with pytest.raises(ConfigError, match="mode must be one of"):
        mc_predict(model, torch.randn(5, 4), 3, mode="functions")
    with pytest.raises(ConfigError, match="memory_budget"):
        mc_predict(model, torch.randn(5, 4), 3, memory_budget=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode", ["example", "function"])
def test_cached_is_the_plain_loop_on_cuda(mode):
    model = _seeded(_cnn).cuda()
    x = _seeded(lambda: torch.randn(37, 1, 28, 28), 1)
    kw = dict(samples=8, seed=3, batch_size=16, mode=mode, draws=True)
    _same(mc_predict(model, x, **kw), mc_predict(model, x, cache=False, **kw))
