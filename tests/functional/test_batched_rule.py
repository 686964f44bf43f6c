"""The batched keep-and-scale rule (functional.unit.batched_dropout_*) against the unbatched one.

The sweep's batched MLP trains K members at once with these masks; each member's mask must be the
mask :func:`droplab.functional.dropout` draws from the same uniforms: the same kept units always,
the same bits wherever the two roundings of ``1 / (1 - p)`` agree (documented in
batched_dropout_params), and the counter threshold must reproduce counter_dropout's masks.
"""

from __future__ import annotations

import pytest
import torch

import droplab.functional as F
from droplab.errors import ConfigError
from droplab.functional.counter import U_BITS, counter_dropout, counter_threshold, counter_uniform

# Rates whose float64-then-round and float32-division scales agree (the common grid values).
GRID = (0.0, 0.05, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _members(rates, mode, seeds, shape=(6, 40)):
    """Per member: its input, its uniforms (the draws dropout makes) and dropout's output."""
    x = torch.randn(len(rates), *shape, generator=torch.Generator().manual_seed(99))
    u = torch.stack([torch.rand(shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
    ref = [
        F.dropout(x[k], p, mode=mode, generator=torch.Generator().manual_seed(s))
        for k, (p, s) in enumerate(zip(rates, seeds))
    ]
    return x, u, ref


@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_each_member_equals_dropout_bit_for_bit_on_the_grid(mode):
    rates = GRID
    seeds = [3 if k % 2 else 11 for k in range(len(rates))]  # shared seeds, as in a sweep
    x, u, ref = _members(rates, mode, seeds)
    p = torch.tensor(rates, dtype=torch.float64).view(-1, 1, 1)
    threshold, scale, _ = F.batched_dropout_params(p, mode=mode)
    mask = F.batched_dropout_mask(u, threshold, scale)
    for k in range(len(rates)):
        assert torch.equal(x[k] * mask[k], ref[k]), (mode, rates[k])


def test_classic_eval_scale_equals_dropout_eval_bit_for_bit():
    rates = (0.1, 0.3, 0.4137, 0.0007, 0.5)
    x = torch.randn(len(rates), 5, 7, generator=torch.Generator().manual_seed(1))
    _, _, eval_scale = F.batched_dropout_params(torch.tensor(rates, dtype=torch.float64).view(-1, 1, 1), mode="classic")
    for k, p in enumerate(rates):
        assert torch.equal(x[k] * eval_scale[k], F.dropout(x[k], p, mode="classic", training=False))


def test_any_rate_keeps_the_same_units_and_scales_within_one_ulp():
    # Off the grid the batched scale is float32(1 / (1 - p)) rounded once from float64 (as torch's
    # dropout and counter_dropout); dropout's generator path divides by float32(1 - p): the kept
    # units are the same, their values at most one ulp apart.
    rates = torch.linspace(0.0005, 0.95, 40, dtype=torch.float64).tolist()
    seeds = list(range(len(rates)))
    x, u, ref = _members(rates, "inverted", seeds, shape=(4, 30))
    threshold, scale, _ = F.batched_dropout_params(torch.tensor(rates, dtype=torch.float64).view(-1, 1, 1))
    out = x * F.batched_dropout_mask(u, threshold, scale)
    differ = 0
    for k, p in enumerate(rates):
        assert torch.equal(out[k] != 0, ref[k] != 0)
        ref_scale = torch.ones(1).div_(1.0 - p)  # dropout's kept-unit scale
        assert abs(float(scale[k]) - float(ref_scale)) <= float(torch.finfo(torch.float32).eps) * float(ref_scale)
        assert torch.allclose(out[k], ref[k], rtol=2**-22, atol=0)  # one ulp of scale + rounding
        differ += not torch.equal(out[k], ref[k])
    assert differ < len(rates)  # most rates agree bit for bit as well


def test_params_shapes_dtypes_and_modes():
    p = torch.tensor([[0.0], [0.5]], dtype=torch.float64)
    thr, scale, ev = F.batched_dropout_params(p)
    assert thr.dtype == scale.dtype == ev.dtype == torch.float32 and thr.shape == (2, 1)
    assert scale.tolist() == [[1.0], [2.0]] and ev.tolist() == [[1.0], [1.0]]
    thr, scale, ev = F.batched_dropout_params(p, mode="classic")
    assert scale.tolist() == [[1.0], [1.0]] and ev.tolist() == [[1.0], [0.5]]
    # float32 rates give the same thresholds and scales as their float64 values
    p32 = torch.tensor([0.3, 0.7])
    assert all(torch.equal(a, b) for a, b in zip(F.batched_dropout_params(p32), F.batched_dropout_params(p32.double())))


def test_unknown_mode_lists_the_choices():
    with pytest.raises(ConfigError, match=r"mode must be one of .*inverted.*classic"):
        F.batched_dropout_params(torch.zeros(2, dtype=torch.float64), mode="scaled")


def test_mask_written_into_the_uniforms_memory():
    u = torch.rand(3, 4, 5, generator=torch.Generator().manual_seed(0))
    thr, scale, _ = F.batched_dropout_params(torch.tensor([0.0, 0.5, 0.9], dtype=torch.float64).view(3, 1, 1))
    expected = F.batched_dropout_mask(u, thr, scale)
    out = F.batched_dropout_mask(u, thr, scale, out=u)
    assert out.data_ptr() == u.data_ptr() and torch.equal(out, expected)
    assert torch.equal(expected[0], torch.ones(4, 5))  # p = 0 keeps everything, scale 1


@pytest.mark.parametrize("p", [0.0, 0.25, 0.3, 0.5 + 2.0**-30, 0.9999999])
def test_counter_threshold_reproduces_counter_dropout(p):
    seed = 5
    u = counter_uniform(20000, seed)
    kept = counter_dropout(torch.ones(20000), p, seed) != 0
    assert torch.equal(u >= counter_threshold(p), kept)
    thr = counter_threshold(p)
    assert thr * 2**U_BITS == int(thr * 2**U_BITS)  # a multiple of 2**-24, exact in float32
    assert float(torch.tensor(thr, dtype=torch.float32)) == thr


def test_counter_threshold_rounds_up_where_float32_rounds_down():
    # p just above a multiple of 2**-24: float32(p) rounds down onto it, so u >= float32(p) would
    # keep the draw equal to that multiple, which counter_dropout drops (u < p exactly).
    p = 0.5 + 2.0**-30
    assert float(torch.tensor(p, dtype=torch.float32)) == 0.5
    assert counter_threshold(p) == 0.5 + 2.0**-24
