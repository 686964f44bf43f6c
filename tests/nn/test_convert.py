"""droplab.nn.convert: torch's dropout modules become droplab layers with the same behaviour.

Statistical checks: the drop fraction of torch's layer and of its droplab replacement each pass
an exact binomial test at the rate (``_layer_stats.ALPHA``); the values a layer can output are
checked exactly (kept units scaled by 1/(1-p), alpha dropout's affine map recomputed from the
SELU paper).
"""

import copy

import pytest
import torch
from torch import nn

import droplab.nn as dn
from droplab.errors import ConfigError
from tests.nn._layer_stats import ALPHA_PRIME, _alpha_coeffs, _assert_binomial, _gen

PAIRS = [
    (nn.Dropout, dn.Dropout),
    (nn.Dropout1d, dn.SpatialDropout),
    (nn.Dropout2d, dn.SpatialDropout),
    (nn.Dropout3d, dn.SpatialDropout),
    (nn.AlphaDropout, dn.AlphaDropout),
    (nn.FeatureAlphaDropout, dn.FeatureAlphaDropout),
]
# One batched input per torch type, of the rank torch's layer documents.
SHAPES = {
    nn.Dropout: (64, 100),
    nn.Dropout1d: (64, 50, 8),
    nn.Dropout2d: (64, 50, 4, 4),
    nn.Dropout3d: (32, 50, 2, 2, 2),
    nn.AlphaDropout: (64, 100),
    nn.FeatureAlphaDropout: (64, 50, 4, 4),
}


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.25))
        self.heads = nn.ModuleList([nn.AlphaDropout(0.1), nn.Linear(16, 2)])

    def forward(self, x):
        return self.heads[1](self.heads[0](self.body(x)))


@pytest.mark.parametrize("torch_cls, droplab_cls", PAIRS)
def test_each_torch_type_becomes_its_droplab_layer_with_its_rate(torch_cls, droplab_cls):
    net = nn.Sequential(nn.Identity(), torch_cls(0.3))
    out = dn.convert(net)
    assert out is net  # in place
    assert type(net[1]) is droplab_cls and net[1].p == 0.3
    assert "p=0.3" in repr(net)


def test_nested_modules_are_converted_and_weights_untouched():
    torch.manual_seed(0)
    net = Net()
    before = copy.deepcopy(net.state_dict())
    dn.convert(net)
    assert type(net.body[2]) is dn.Dropout and net.body[2].p == 0.25
    assert type(net.heads[0]) is dn.AlphaDropout and net.heads[0].p == 0.1
    after = net.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(type(m) in dn.convert.__globals__["CONVERTED_TYPES"] for m in net.modules())


def test_train_eval_mode_is_kept():
    net = nn.Sequential(nn.Dropout(0.5), nn.Dropout2d(0.5)).eval()
    dn.convert(net)
    assert not net[0].training and not net[1].training


@pytest.mark.parametrize("torch_cls, droplab_cls", PAIRS)
def test_eval_mode_is_the_identity_like_torch(torch_cls, droplab_cls):
    x = torch.randn(SHAPES[torch_cls])
    ours = dn.convert(torch_cls(0.4)).eval()
    assert type(ours) is droplab_cls
    assert ours(x) is x
    assert torch.equal(torch_cls(0.4).eval()(x), x)


@pytest.mark.parametrize("torch_cls, droplab_cls", PAIRS)
def test_p_zero_is_the_identity_in_training(torch_cls, droplab_cls):
    x = torch.randn(SHAPES[torch_cls])
    ours = dn.convert(torch_cls(0.0))
    assert ours.training and ours(x) is x
    assert torch.equal(torch_cls(0.0)(x), x)


@pytest.mark.parametrize("torch_cls", [c for c, _ in PAIRS])
def test_p_one_is_refused_with_its_path(torch_cls):
    net = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU(), torch_cls(1.0)))
    with pytest.raises(ConfigError, match=r"cannot convert .*\(p=1\.0\) at '1\.1': it drops every unit"):
        dn.convert(net)
    assert type(net[1][1]) is torch_cls  # nothing half-converted


def test_root_dropout_module_returns_the_new_layer():
    layer = nn.Dropout(0.2)
    new = dn.convert(layer)
    assert new is not layer and type(new) is dn.Dropout and new.p == 0.2


def test_subclasses_are_left_alone_and_other_modules_too():
    class MyDropout(nn.Dropout):
        def forward(self, x):
            return x * 2

    net = nn.Sequential(MyDropout(0.1), nn.BatchNorm1d(3), dn.Dropout(0.2))
    mine = net[0]
    dn.convert(net)
    assert net[0] is mine and type(net[1]) is nn.BatchNorm1d and type(net[2]) is dn.Dropout


def test_not_a_module_is_refused():
    with pytest.raises(ConfigError, match="convert expects an nn.Module, got list"):
        dn.convert([nn.Dropout()])


def test_generator_makes_masks_reproducible():
    x = torch.ones(8, 32)
    a = dn.convert(nn.Sequential(nn.Dropout(0.5)), generator=_gen(3))
    b = dn.convert(nn.Sequential(nn.Dropout(0.5)), generator=_gen(3))
    assert torch.equal(a(x), b(x))
    assert not torch.equal(a(x), a(x))  # the generator advances


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
@pytest.mark.parametrize("seed", [0, 1])
def test_unit_dropout_same_distribution_as_torch(p, seed):
    x = torch.ones(200, 500)
    torch.manual_seed(seed)
    theirs = nn.Dropout(p)(x)
    ours = dn.convert(nn.Dropout(p), generator=_gen(seed))(x)
    for y in (theirs, ours):
        scale = torch.tensor(1 / (1 - p))
        assert bool(((y == 0) | torch.isclose(y, scale)).all())
        _assert_binomial(int((y == 0).sum()), y.numel(), p)


@pytest.mark.parametrize("torch_cls", [nn.Dropout1d, nn.Dropout2d, nn.Dropout3d])
@pytest.mark.parametrize("seed", [0, 1])
def test_channel_dropout_same_distribution_as_torch(torch_cls, seed):
    p = 0.3
    x = torch.ones(SHAPES[torch_cls])
    torch.manual_seed(seed)
    theirs = torch_cls(p)(x)
    ours = dn.convert(torch_cls(p), generator=_gen(seed))(x)
    for y in (theirs, ours):
        flat = y.flatten(2)
        # a channel is all 0 or all 1/(1-p): whole maps are dropped
        assert torch.equal(flat.amin(-1), flat.amax(-1))
        assert bool(((flat == 0) | torch.isclose(flat, torch.tensor(1 / (1 - p)))).all())
        _assert_binomial(int((flat[..., 0] == 0).sum()), flat.shape[0] * flat.shape[1], p)


@pytest.mark.parametrize("torch_cls", [nn.AlphaDropout, nn.FeatureAlphaDropout])
@pytest.mark.parametrize("seed", [0, 1])
def test_alpha_dropout_same_values_and_rate_as_torch(torch_cls, seed):
    p = 0.2
    a, b = _alpha_coeffs(p)
    x = torch.randn(SHAPES[torch_cls], dtype=torch.float64)
    torch.manual_seed(seed)
    theirs = torch_cls(p)(x)
    ours = dn.convert(torch_cls(p), generator=_gen(seed))(x)
    for y in (theirs, ours):
        kept = torch.isclose(y, a * x + b, rtol=0, atol=1e-9)
        dropped = torch.isclose(y, torch.full_like(y, a * ALPHA_PRIME + b), rtol=0, atol=1e-9)
        assert bool((kept | dropped).all())
        if torch_cls is nn.FeatureAlphaDropout:  # whole channels share the draw
            per_channel = dropped.flatten(2)
            assert torch.equal(per_channel.all(-1), per_channel.any(-1))
            _assert_binomial(int(per_channel[..., 0].sum()), per_channel[..., 0].numel(), p)
        else:
            _assert_binomial(int(dropped.sum()), y.numel(), p)


def test_converted_model_trains_and_is_found_by_the_inference_tools():
    torch.manual_seed(0)
    net = dn.convert(Net())
    layers = [m for m in net.modules() if isinstance(m, dn.StochasticLayer)]
    assert [type(m) for m in layers] == [dn.Dropout, dn.AlphaDropout]
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(32, 8), torch.randint(0, 2, (32,))
    loss = nn.functional.cross_entropy(net(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
