"""Masksembles and BatchEnsemble: mask structure and overlap, rank-one fast weights, errors."""

import itertools

import pytest
import torch
import torch.nn.functional as F

import droplab.functional as dF
import droplab.nn as dn
from droplab.errors import ConfigError, DataError
from droplab.inference import mc_predict


@pytest.mark.parametrize("channels,n,scale", [(64, 4, 2.0), (32, 5, 3.0), (100, 2, 1.5), (16, 4, 1.0)])
def test_masks_have_the_reference_structure(channels, n, scale):
    for seed in range(3):
        masks = dF.masksembles_masks(channels, n, scale, generator=torch.Generator().manual_seed(seed))
        assert masks.shape == (n, channels) and set(masks.unique().tolist()) <= {0.0, 1.0}
        kept = masks.sum(1)
        assert (kept == kept[0]).all()  # every member keeps the same number m of features
        assert (masks.sum(0) >= 1).all()  # every feature serves at least one member
        if n == 2:  # two masks of m over C features used: they share exactly 2m - C
            assert int((masks[0] * masks[1]).sum()) == 2 * int(kept[0]) - channels


def test_scale_one_is_one_model_and_overlap_falls_as_scale_grows():
    assert torch.equal(dF.masksembles_masks(12, 3, 1.0), torch.ones(3, 12))
    iou = {}
    for scale in (1.5, 2.0, 4.0):
        values = []
        for seed in range(10):
            m = dF.masksembles_masks(64, 4, scale, generator=torch.Generator().manual_seed(seed))
            for i, j in itertools.combinations(range(4), 2):
                values.append(float((m[i] * m[j]).sum() / ((m[i] + m[j]) > 0).sum()))
        iou[scale] = sum(values) / len(values)
    assert iou[1.5] > iou[2.0] > iou[4.0]
    # two random m-subsets of T = m s positions share m^2 / T = m / s on average (hypergeometric);
    # IoU = k / (2m - k) with k ~ m / s: at s = 2 about 1/3 (60 pairs, loose tolerance)
    assert abs(iou[2.0] - 1 / 3) < 0.08


def test_masks_are_seeded_and_leave_the_global_rng_alone():
    state = torch.get_rng_state()
    a = dn.Masksembles(32, 4, 2.0, generator=torch.Generator().manual_seed(1))
    b = dn.Masksembles(32, 4, 2.0, generator=torch.Generator().manual_seed(1))
    c = dn.Masksembles(32, 4, 2.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.masks, b.masks) and not torch.equal(a.masks, c.masks)


def test_masksembles_applies_mask_i_to_group_i_in_train_and_eval():
    layer = dn.Masksembles(20, 4, 2.0, generator=torch.Generator().manual_seed(0))
    x = torch.randn(4 * 3, 20, 5)
    for mode in (True, False):
        out = layer.train(mode)(x)
        for i in range(4):
            torch.testing.assert_close(out[3 * i : 3 * i + 3], x[3 * i : 3 * i + 3] * layer.masks[i].view(1, 20, 1))


def test_batch_ensemble_members_use_rank_one_fast_weights():
    g = torch.Generator().manual_seed(0)
    layer = dn.BatchEnsembleLinear(6, 4, members=3, generator=g)
    x = torch.randn(3 * 5, 6)
    out = layer(x)
    for i in range(3):
        w_i = layer.weight * torch.outer(layer.s[i], layer.r[i])  # W * (s_i r_i^T)
        torch.testing.assert_close(out[5 * i : 5 * i + 5], F.linear(x[5 * i : 5 * i + 5], w_i, layer.bias[i]))
        torch.testing.assert_close(layer.member_weight(i), w_i)
    conv = dn.BatchEnsembleConv2d(2, 3, 3, members=2, padding=1, generator=g)
    xc = torch.randn(2 * 4, 2, 6, 7)
    oc = conv(xc)
    for i in range(2):
        w_i = conv.weight * conv.s[i].view(-1, 1, 1, 1) * conv.r[i].view(1, -1, 1, 1)
        torch.testing.assert_close(oc[4 * i : 4 * i + 4], F.conv2d(xc[4 * i : 4 * i + 4], w_i, conv.bias[i], padding=1))
    out.sum().backward()
    assert all(p.grad is not None for p in (layer.weight, layer.r, layer.s, layer.bias))


def test_random_sign_init_is_a_fair_coin():
    layer = dn.BatchEnsembleLinear(200, 100, members=8, generator=torch.Generator().manual_seed(3))
    signs = torch.cat([layer.r.flatten(), layer.s.flatten()])
    assert set(signs.unique().tolist()) == {-1.0, 1.0}
    n = signs.numel()  # 2400 fair coins: the share of +1 within 5 SD (5 * 0.5 / sqrt(n) = 0.051)
    assert abs(float((signs > 0).double().mean()) - 0.5) < 5 * 0.5 / n**0.5
    ones = dn.BatchEnsembleLinear(3, 2, members=2, init="ones")
    assert torch.equal(ones.r, torch.ones(2, 3))


def test_member_models_go_through_mc_predict():
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(dn.BatchEnsembleLinear(5, 16, 4, generator=g), torch.nn.ReLU(),
                                dn.Masksembles(16, 4, 2.0, generator=g), dn.BatchEnsembleLinear(16, 3, 4, generator=g))
    x = torch.randn(7, 5)
    res = mc_predict(model, x, draws=True)
    assert res.samples == 4 and res.mode == "members" and res.draws.shape == (4, 7, 3)
    tiled = model(x.repeat(4, 1)).reshape(4, 7, 3).softmax(-1)
    torch.testing.assert_close(res.mean, tiled.mean(0))
    torch.testing.assert_close(res.draws, tiled)
    assert (res.mutual_information > 0).all()


def test_errors():
    with pytest.raises(ConfigError, match="scale must be in"):
        dF.masksembles_masks(32, 4, 7.0)
    with pytest.raises(ConfigError, match="channels must be at least 10"):
        dF.masksembles_masks(8, 4, 2.0)
    with pytest.raises(DataError, match="must split into 4 equal member groups"):
        dn.Masksembles(16, 4)(torch.randn(6, 16))
    with pytest.raises(DataError, match=r"x must have shape \(M \* B, 16"):
        dn.Masksembles(16, 4)(torch.randn(8, 15))
    with pytest.raises(DataError, match="must split into 3 equal member groups"):
        dn.BatchEnsembleLinear(4, 2, 3)(torch.randn(4, 4))
    with pytest.raises(ConfigError, match="init must be one of"):
        dn.BatchEnsembleLinear(4, 2, 3, init="normal")
    with pytest.raises(ConfigError, match="disagree on the number of members"):
        mc_predict(torch.nn.Sequential(dn.Masksembles(32, 2), dn.Masksembles(32, 4)), torch.randn(3, 32))
