"""build_optimizer_over: the optimizer of build_optimizer over tensors no module holds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from droplab.regularize import SGDW
from droplab.train import TrainConfig, build_optimizer
from droplab.train.optim import build_optimizer_over, direct_step

CONFIGS = {
    "sgd": TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True),
    "sgdw": TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.01),
    "adam": TrainConfig(optimizer="adam", lr=0.01),
    "adamw": TrainConfig(optimizer="adamw", lr=0.01, weight_decay=0.05),
    "rmsprop": TrainConfig(optimizer="rmsprop", lr=0.01, momentum=0.5),
}


def _steps(opt, params, n=4):
    g = torch.Generator().manual_seed(1)
    for _ in range(n):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_equals_build_optimizer_on_a_module_bit_for_bit(name):
    cfg = CONFIGS[name]
    net = nn.Linear(5, 3)
    w, b = net.weight.detach().clone().requires_grad_(), net.bias.detach().clone().requires_grad_()
    ref = build_optimizer(net, cfg)
    opt = build_optimizer_over([w], [b], cfg)
    assert type(opt) is type(ref)
    assert [g["weight_decay"] for g in opt.param_groups] == [g["weight_decay"] for g in ref.param_groups]
    _steps(ref, [net.weight, net.bias])
    _steps(opt, [w, b])
    assert torch.equal(w, net.weight) and torch.equal(b, net.bias)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fused_kernels_give_the_same_updates_up_to_rounding(name):
    cfg = CONFIGS[name]
    base = [torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(0)), torch.zeros(3, 1, 2)]
    plain = [t.clone().requires_grad_() for t in base]
    fast = [t.clone().requires_grad_() for t in base]
    opt = build_optimizer_over(plain[:1], plain[1:], cfg)
    opt_fast = build_optimizer_over(fast[:1], fast[1:], cfg, fused=True)
    if name in ("sgd", "adam", "adamw"):
        assert opt_fast.defaults["fused"] is True
    elif name == "rmsprop":
        assert opt_fast.defaults["foreach"] is True
    else:
        assert isinstance(opt_fast, SGDW)  # droplab's SGDW has no fused kernel
    _steps(opt, plain)
    _steps(opt_fast, fast)
    for a, b in zip(plain, fast):
        torch.testing.assert_close(a, b)


def test_weight_decay_only_on_weights_and_no_empty_group():
    w = torch.zeros(2, 2, requires_grad=True)
    opt = build_optimizer_over([w], [], TrainConfig(optimizer="adamw", weight_decay=0.1))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1]
    opt = build_optimizer_over([w], [torch.zeros(2, requires_grad=True)], TrainConfig(optimizer="adam"))
    assert len(opt.param_groups) == 1 and len(opt.param_groups[0]["params"]) == 2


def _adam_pair(**kw):
    def make():
        ws = [torch.ones(5, 4, 3), torch.ones(5, 1, 3)]
        groups = [{"params": [ws[0]], "weight_decay": 1e-3}, {"params": [ws[1]], "weight_decay": 0.0}]
        return ws, torch.optim.Adam(groups, lr=1e-2, fused=True, **kw)

    return make(), make()


def test_direct_step_gives_adams_bits_with_changing_learning_rates():
    (a, oa), (b, ob) = _adam_pair()
    g = torch.Generator().manual_seed(0)
    grads = [[torch.randn(w.shape, generator=g) for w in a] for _ in range(12)]
    assert direct_step(ob) is None  # no state before the first step
    for i, gs in enumerate(grads):
        for w, v in zip(a, gs):
            w.grad = v
        for w, v in zip(b, gs):
            w.grad = v.clone()
        oa.param_groups[0]["lr"] = ob.param_groups[0]["lr"] = 1e-2 / (i + 1)
        oa.step()
        if i == 0:
            ob.step()
            step = direct_step(ob)
            assert step is not None
        else:
            step()
    for p, q in zip(a, b):
        assert torch.equal(p, q)
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(oa.state[p][key], ob.state[q][key])


@pytest.mark.parametrize("kw", [{"amsgrad": True}, {"maximize": True}, {"decoupled_weight_decay": True}])
def test_direct_step_declines_what_it_does_not_reproduce(kw):
    (a, oa), _ = _adam_pair(**kw)
    for w in a:
        w.grad = torch.ones_like(w)
    oa.step()
    assert direct_step(oa) is None


def test_direct_step_declines_other_optimizers_and_unfused_adam():
    w = torch.ones(3, requires_grad=True)
    w.grad = torch.ones(3)
    for opt in (torch.optim.SGD([w], lr=0.1, momentum=0.9), torch.optim.Adam([w], lr=0.1)):
        opt.step()
        assert direct_step(opt) is None
