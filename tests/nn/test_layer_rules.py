"""Rules every dropout-family layer follows, each pinned by a defect it once had (issue 20).

* masks come from float32 uniforms whatever the input's dtype (item 3), and DropBlock counts its
  kept units in float32 or better (item 2);
* the input's memory format is kept (item 6);
* eval mode is the identity, also for inputs DropBlock's block does not fit (item 4); in training
  the block is clamped to the smallest spatial size, as timm and torchvision do;
* empty inputs come back empty (item 8).

Numpy scalar rates (item 5) are checked for every exported layer in test_conformance.py.
"""

import pytest
import torch
from torch import nn

import droplab.functional as DF
import droplab.nn as dn
from droplab.functional import unit as _unit

from _layer_stats import _gen


CL = torch.channels_last


# ------------------------------------------------------------- float32 draws (items 2, 3) ----


def test_float16_drop_block_keeps_about_90_percent_of_a_large_input():
    # 8*64*32*32 = 524288 kept units overflowed float16's sum (max 65504): the scale became 0.
    y = DF.drop_block2d(torch.ones(8, 64, 32, 32, dtype=torch.float16), 0.1, 5, generator=_gen(0))
    kept = (y != 0).float().mean().item()
    # 512 maps, about 30 seeds of 25 units each per map: sd of the kept fraction < 0.005.
    assert 0.88 < kept < 0.93
    y32 = DF.drop_block2d(torch.ones(8, 64, 32, 32), 0.1, 5, generator=_gen(0))
    assert torch.equal(y != 0, y32 != 0)
    torch.testing.assert_close(y.float(), y32, rtol=1e-3, atol=0)  # scale ~1.1 in both


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_drop_block_rate_does_not_depend_on_dtype(dtype):
    # Was 0.106 in bfloat16 against 0.049 in float32 (uniforms drawn, and quantized, in bfloat16).
    x = torch.ones(64, 16, 32, 32)
    y32 = DF.drop_block2d(x, 0.05, 7, generator=_gen(0))
    y = DF.drop_block2d(x.to(dtype), 0.05, 7, generator=_gen(0))
    assert torch.equal(y == 0, y32 == 0)  # the same masks, so the same rate
    rate = (y32 == 0).float().mean().item()
    # ~1070 seeds of <= 49 units in 2**20 units: sd of the rate ~0.0015; overlaps pull it below p.
    assert 0.04 < rate < 0.055


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_drop_connect_rate_does_not_depend_on_dtype(dtype):
    # Was 0.0039 at p=0.002 in bfloat16 (rate rounded to a multiple of 2**-8).
    w = torch.ones(1000, 1000)
    y = DF.drop_connect(w.to(dtype), 0.002, generator=_gen(0))
    assert torch.equal(y == 0, DF.drop_connect(w, 0.002, generator=_gen(0)) == 0)
    rate = (y == 0).float().mean().item()
    assert abs(rate - 0.002) < 5 * (0.002 * 0.998 / 1e6) ** 0.5  # 5 sd of a binomial, 1e6 draws


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_concrete_dropout_draws_do_not_depend_on_dtype(dtype):
    x = torch.rand(64, 32, generator=_gen(1)) + 0.5
    y32 = DF.concrete_dropout(x, -1.0, generator=_gen(0))
    y = DF.concrete_dropout(x.to(dtype), -1.0, generator=_gen(0))
    torch.testing.assert_close(y.float(), y32, rtol=2e-2, atol=2e-2)


# ------------------------------------------------------------- memory format (item 6) --------

LAYOUT_CASES = {
    "Dropout": lambda: dn.Dropout(0.3),
    "Dropout-classic": lambda: dn.Dropout(0.3, mode="classic"),
    "SpatialDropout": lambda: dn.SpatialDropout(0.3),
    "GaussianDropout": lambda: dn.GaussianDropout(0.3),
    "AlphaDropout": lambda: dn.AlphaDropout(0.3),
    "DropPath": lambda: dn.DropPath(0.3),
    "DropBlock2d": lambda: dn.DropBlock2d(0.1, 5),
    "ConcreteDropout": lambda: dn.ConcreteDropout(init_p=0.3),
    "FeatureAlphaDropout": lambda: dn.FeatureAlphaDropout(0.3),
    "GaussianNoise": lambda: dn.GaussianNoise(0.3),
    "DropBlock2d-noise": lambda: dn.DropBlock2d(0.1, 3, with_noise=True),
}


@pytest.fixture
def counter_on(monkeypatch):
    # Kernels stay eager (conftest); pretend compilation is available so the path is chosen.
    monkeypatch.setattr(_unit, "counter_backend", lambda: "compiled")


@pytest.mark.parametrize("shape", [(8, 64, 32, 32), (2, 3, 4, 5)], ids=["large", "small"])
@pytest.mark.parametrize("name", list(LAYOUT_CASES))
def test_channels_last_input_gives_channels_last_output(name, shape, counter_on):
    x = torch.randn(shape, generator=_gen(0)).to(memory_format=CL)
    layer = LAYOUT_CASES[name]()
    layer.generator = _gen(1)
    y = layer.train()(x)
    assert y.is_contiguous(memory_format=CL)
    layer.generator = _gen(1)
    if name == "Dropout" and x.numel() >= _unit.COUNTER_MIN_NUMEL:
        # the counter path indexes elements in memory order: the NHWC tensor's own masks
        nhwc = x.permute(0, 2, 3, 1).contiguous()
        want = layer(nhwc).permute(0, 3, 1, 2)
    else:  # torch's generator draws over logical positions: the contiguous input's masks
        want = layer(x.contiguous())
    torch.testing.assert_close(y, want, rtol=0, atol=0)


def test_channels_last_3d_input_keeps_its_format(counter_on):
    x = torch.randn(2, 3, 4, 5, 6, generator=_gen(0)).to(memory_format=torch.channels_last_3d)
    for layer in (
        dn.AlphaDropout(0.3), dn.DropBlock3d(0.1, 3), dn.SpatialDropout(0.3),
        dn.FeatureAlphaDropout(0.3),
    ):
        assert layer.train()(x).is_contiguous(memory_format=torch.channels_last_3d)


# ------------------------------------------------------------- eval identity (item 4) --------


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_drop_block_smaller_input_than_block_is_identity_in_eval(dims):
    layer = {1: dn.DropBlock1d, 2: dn.DropBlock2d, 3: dn.DropBlock3d}[dims](0.1, block_size=7)
    x = torch.randn((1, 3) + (5,) * dims, generator=_gen(0))
    assert layer.eval()(x) is x
    fn = {1: DF.drop_block1d, 2: DF.drop_block2d, 3: DF.drop_block3d}[dims]
    assert fn(x, 0.1, 7, training=False) is x


def test_drop_block_clamps_the_block_to_the_input_in_training():
    # timm and torchvision clamp the block to min(H, W); so does droplab (documented in README).
    x = torch.ones(4000, 1, 3, 10)
    g1, g2 = _gen(0), _gen(0)
    y = DF.drop_block2d(x, 0.2, 7, generator=g1)
    assert torch.equal(y, DF.drop_block2d(x, 0.2, 3, generator=g2))  # exactly block_size=3
    # a 3x3 block in a 3x10 map: seeds in an 1x8 valid strip, rate gamma = 0.2*30/(9*8)
    rate = (y == 0).float().mean().item()
    assert 0.15 < rate < 0.2  # overlaps pull the fraction below 0.2 (sd ~0.003 here)


# ------------------------------------------------------------- empty inputs (item 8) ---------


@pytest.mark.parametrize(
    "shape", [(2, 0, 8, 8), (0, 3, 8, 8), (2, 3, 0, 8)], ids=["no-channels", "no-batch", "no-H"]
)
def test_drop_block_empty_input_comes_back_empty(shape):
    x = torch.ones(shape, requires_grad=True)
    y = DF.drop_block2d(x, 0.3, 3)
    assert y.shape == x.shape
    dn.DropBlock2d(0.3, 3)(x).sum().backward()
    assert x.grad.shape == x.shape
    torch.testing.assert_close(y, nn.functional.dropout2d(x, 0.3))  # torch returns the empty too
