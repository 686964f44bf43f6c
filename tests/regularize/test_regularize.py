import pytest
import torch
from torch import nn

from droplab.errors import ConfigError
from droplab.regularize import (
    PARAMETER_KINDS,
    SGDW,
    MaxNorm,
    l1_penalty,
    l2_penalty,
    max_norm_,
    param_groups,
    parameter_kind,
    weight_parameters,
)


class _Zoo(nn.Module):
    """One of every layer family the selection rule has to sort."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.lstm = nn.LSTM(4, 3)
        self.conv = nn.Conv1d(3, 5, 3)
        self.bn = nn.BatchNorm1d(5)
        self.ln = nn.LayerNorm(5)
        self.gn = nn.GroupNorm(1, 5)
        self.act = nn.PReLU()
        self.attn = nn.MultiheadAttention(4, 2)
        self.fc = nn.Linear(5, 2)
        self.scale = nn.Parameter(torch.ones(()))


def _ids(params):
    return {id(p) for p in params}


def test_parameter_kinds_of_each_layer_family():
    z = _Zoo()
    expected = {
        "emb.weight": "embedding",
        "lstm.weight_ih_l0": "weight",
        "lstm.weight_hh_l0": "weight",
        "lstm.bias_ih_l0": "bias",
        "lstm.bias_hh_l0": "bias",
        "conv.weight": "weight",
        "conv.bias": "bias",
        "bn.weight": "norm",
        "bn.bias": "norm",
        "ln.weight": "norm",
        "ln.bias": "norm",
        "gn.weight": "norm",
        "gn.bias": "norm",
        "act.weight": "other",
        "attn.in_proj_weight": "weight",
        "attn.in_proj_bias": "bias",
        "attn.out_proj.weight": "weight",
        "attn.out_proj.bias": "bias",
        "fc.weight": "weight",
        "fc.bias": "bias",
        "scale": "other",
    }
    modules = dict(z.named_modules())
    seen = {}
    for qualified, p in z.named_parameters():
        owner, _, local = qualified.rpartition(".")
        seen[qualified] = parameter_kind(modules[owner], local, p)
    assert seen == expected
    assert set(seen.values()) <= set(PARAMETER_KINDS)


def test_weight_parameters_default_and_include():
    z = _Zoo()
    weights = [z.emb.weight, z.lstm.weight_ih_l0, z.lstm.weight_hh_l0, z.conv.weight,
               z.attn.in_proj_weight, z.attn.out_proj.weight, z.fc.weight]
    assert _ids(weight_parameters(z)) == _ids(weights)
    assert len(weight_parameters(z)) == len(weights)
    no_emb = weight_parameters(z, include=("weight",))
    assert _ids(no_emb) == _ids(weights) - {id(z.emb.weight)}
    with_bias = weight_parameters(z, include=("weight", "embedding", "bias"))
    assert id(z.fc.bias) in _ids(with_bias) and id(z.bn.bias) not in _ids(with_bias)
    assert id(z.bn.weight) in _ids(weight_parameters(z, include="norm"))


def test_weight_parameters_predicate_frozen_and_tied():
    net = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 3))
    net[2].weight = net[0].weight  # tied: listed once
    net[1].weight.requires_grad_(False)  # frozen: never listed
    got = weight_parameters(net)
    assert len(got) == 1 and got[0] is net[0].weight
    only_fc2 = weight_parameters(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)),
                                 predicate=lambda name, p: name.startswith("1."))
    assert len(only_fc2) == 1 and only_fc2[0].shape == (2, 2)


def test_weight_parameters_errors():
    with pytest.raises(ConfigError, match=r"include must be one of 'weight', .*got 'biass'.*did you mean 'bias'"):
        weight_parameters(nn.Linear(2, 2), include=("biass",))
    with pytest.raises(ConfigError, match=r"model must be a torch.nn.Module, got list"):
        weight_parameters([nn.Parameter(torch.ones(2))])


def test_l1_l2_values_match_hand_computation():
    net = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    w = [net[0].weight, net[2].weight]
    l2 = sum((p.detach() ** 2).sum() for p in w)
    l1 = sum(p.detach().abs().sum() for p in w)
    torch.testing.assert_close(l2_penalty(net, 0.3), 0.3 * l2)
    torch.testing.assert_close(l1_penalty(net, 0.3), 0.3 * l1)
    # tensors are used as given (here: a bias too)
    torch.testing.assert_close(l2_penalty([net[0].bias], 2.0), 2.0 * (net[0].bias.detach() ** 2).sum())
    assert l2_penalty(nn.ReLU(), 1.0).item() == 0.0  # no weights: plain zero
    assert l1_penalty(net, 0.0).item() == 0.0


def test_l2_gradient_touches_weights_only_and_equals_sgd_weight_decay():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    l2_penalty(net, 0.25).backward()
    torch.testing.assert_close(net[0].weight.grad, 2 * 0.25 * net[0].weight.detach())
    assert net[0].bias.grad is None and net[1].weight.grad is None
    # strength s with SGD == SGD(weight_decay=2s) on the weights (no 1/2 in the penalty)
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    a, b = nn.Linear(3, 1), nn.Linear(3, 1)
    b.load_state_dict(a.state_dict())
    opt_a = torch.optim.SGD(a.parameters(), lr=0.1)
    opt_b = torch.optim.SGD([{"params": [b.weight], "weight_decay": 0.2},
                             {"params": [b.bias], "weight_decay": 0.0}], lr=0.1)
    (nn.functional.mse_loss(a(x), y) + l2_penalty(a, 0.1)).backward()
    nn.functional.mse_loss(b(x), y).backward()
    opt_a.step()
    opt_b.step()
    torch.testing.assert_close(a.weight, b.weight)
    torch.testing.assert_close(a.bias, b.bias)


def test_penalty_errors():
    with pytest.raises(ConfigError, match=r"strength must be a finite number >= 0, got -1"):
        l2_penalty(nn.Linear(2, 2), -1)
    with pytest.raises(ConfigError, match=r"item 1 is str"):
        l1_penalty([torch.ones(2), "w"], 1.0)


def test_param_groups_split():
    z = _Zoo()
    groups = param_groups(z, 0.01)
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0]
    assert _ids(groups[0]["params"]) == _ids(weight_parameters(z))
    all_trainable = _ids(p for p in z.parameters())
    assert _ids(groups[0]["params"]) | _ids(groups[1]["params"]) == all_trainable
    assert not _ids(groups[0]["params"]) & _ids(groups[1]["params"])
    assert {id(z.bn.weight), id(z.fc.bias), id(z.scale)} <= _ids(groups[1]["params"])
    torch.optim.AdamW(groups, lr=1e-3)  # torch accepts the groups
    only_bias_free = param_groups(nn.Linear(2, 2, bias=False), 0.1)
    assert len(only_bias_free) == 1 and only_bias_free[0]["weight_decay"] == 0.1
    with pytest.raises(ConfigError, match=r"weight_decay must be a finite number >= 0, got -0.1"):
        param_groups(z, -0.1)
    with pytest.raises(ConfigError, match=r"model has no trainable parameters"):
        param_groups(nn.ReLU(), 0.1)


def _quadratic_grads(params, targets):
    loss = sum(((p - t) ** 2).sum() * (i + 1) for i, (p, t) in enumerate(zip(params, targets)))
    loss.backward()


@pytest.mark.parametrize("momentum,dampening,nesterov", [(0.0, 0.0, False), (0.9, 0.0, False),
                                                         (0.9, 0.3, False), (0.8, 0.0, True)])
def test_sgdw_matches_hand_computation(momentum, dampening, nesterov):
    g = torch.Generator().manual_seed(3)
    init = [torch.randn(4, 3, generator=g, dtype=torch.float64),
            torch.randn(5, generator=g, dtype=torch.float64)]
    targets = [torch.randn_like(t) for t in init]
    params = [nn.Parameter(t.clone()) for t in init]
    lr, wd = 0.05, 0.1
    opt = SGDW([{"params": [params[0]], "weight_decay": wd},
                {"params": [params[1]], "weight_decay": 0.0}],
               lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov)
    theta = [t.clone() for t in init]
    bufs = [None, None]
    decay = [wd, 0.0]
    for _ in range(4):
        opt.zero_grad()
        _quadratic_grads(params, targets)
        opt.step()
        for i in range(2):
            grad = 2 * (i + 1) * (theta[i] - targets[i])
            d = grad
            if momentum:
                bufs[i] = grad.clone() if bufs[i] is None else momentum * bufs[i] + (1 - dampening) * grad
                d = grad + momentum * bufs[i] if nesterov else bufs[i]
            theta[i] = theta[i] - lr * decay[i] * theta[i] - lr * d
        for p, t in zip(params, theta):
            torch.testing.assert_close(p.detach(), t, rtol=1e-12, atol=1e-12)
    if momentum:  # decoupled: the decay never enters the momentum buffer
        torch.testing.assert_close(opt.state[params[0]]["momentum_buffer"], bufs[0])


def test_sgdw_without_decay_equals_torch_sgd_bitwise():
    torch.manual_seed(1)
    a = nn.Linear(6, 3)
    b = nn.Linear(6, 3)
    b.load_state_dict(a.state_dict())
    x, y = torch.randn(10, 6), torch.randn(10, 3)
    opt_a = SGDW(a.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9, nesterov=True, foreach=False)
    for _ in range(3):
        for net, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            nn.functional.mse_loss(net(x), y).backward()
            opt.step()
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_torch_adamw_is_adam_plus_lr_times_decay():
    """The convention droplab documents: decoupled decay theta -= lr * wd * theta (torch AdamW)."""
    torch.manual_seed(2)
    a, b = nn.Linear(5, 2), nn.Linear(5, 2)
    b.load_state_dict(a.state_dict())
    x, y = torch.randn(16, 5), torch.randn(16, 2)
    lr, wd = 0.01, 0.3
    opt_a = torch.optim.AdamW(a.parameters(), lr=lr, weight_decay=wd)
    opt_b = torch.optim.Adam(b.parameters(), lr=lr, weight_decay=0.0)
    for _ in range(5):
        for net, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            nn.functional.mse_loss(net(x), y).backward()
        before = [p.detach().clone() for p in b.parameters()]
        opt_a.step()
        opt_b.step()
        with torch.no_grad():
            for p, p0 in zip(b.parameters(), before):
                p.sub_(lr * wd * p0)
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_sgdw_errors_and_state_dict():
    p = [nn.Parameter(torch.ones(2))]
    with pytest.raises(ConfigError, match=r"nesterov momentum needs momentum > 0 and dampening 0"):
        SGDW(p, lr=0.1, nesterov=True)
    with pytest.raises(ConfigError, match=r"lr must be a finite number >= 0, got -1"):
        SGDW(p, lr=-1)
    with pytest.raises(ConfigError, match=r"dampening must be in \[0, 1\], got 2"):
        SGDW(p, dampening=2)
    opt = SGDW(p, lr=0.1, momentum=0.5, weight_decay=0.1)
    p[0].grad = torch.ones(2)
    opt.step()
    clone = SGDW([nn.Parameter(torch.ones(2))], lr=0.1, momentum=0.5, weight_decay=0.1)
    clone.load_state_dict(opt.state_dict())
    assert torch.equal(next(iter(clone.state.values()))["momentum_buffer"], torch.ones(2))
    assert opt.step(lambda: 3.0) == 3.0  # closure's loss is returned


def _rows_with_norms(norms, fan_in, seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = torch.randn(len(norms), fan_in, generator=g)
    rows = rows / rows.norm(dim=1, keepdim=True)
    return rows * torch.tensor(norms).unsqueeze(1)


def test_max_norm_linear_rows_exact():
    lin = nn.Linear(6, 5)
    c = 2.0
    with torch.no_grad():
        lin.weight.copy_(_rows_with_norms([0.5, 2.0, 2.5, 10.0, 0.0], 6))
    before = lin.weight.detach().clone()
    bias = lin.bias.detach().clone()
    assert max_norm_(lin, c) is None
    after = lin.weight.detach()
    for i in (0, 1, 4):  # norm <= c: bitwise untouched
        assert torch.equal(after[i], before[i])
    for i in (2, 3):  # clipped to norm c, same direction
        torch.testing.assert_close(after[i].norm(), torch.tensor(c), rtol=1e-6, atol=0)
        torch.testing.assert_close(after[i], before[i] * c / before[i].norm())
    assert torch.equal(lin.bias, bias)
    assert lin.weight.is_leaf and lin.weight.grad_fn is None


def test_max_norm_conv_filters_and_transposed_groups():
    g = torch.Generator().manual_seed(4)
    conv = nn.Conv2d(3, 4, 3)
    ct = nn.ConvTranspose2d(4, 6, 2, groups=2)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
        ct.weight.copy_(torch.randn(ct.weight.shape, generator=g))
    conv_norms = conv.weight.detach().flatten(1).norm(dim=1)
    c = float(conv_norms.median())
    before = conv.weight.detach().clone()
    max_norm_(conv, c)
    after_norms = conv.weight.detach().flatten(1).norm(dim=1)
    for i in range(4):
        if conv_norms[i] <= c:
            assert torch.equal(conv.weight[i], before[i])
        else:
            torch.testing.assert_close(after_norms[i], torch.tensor(c), rtol=1e-6, atol=0)

    # ConvTranspose2d(4, 6, groups=2): weight (4, 3, 2, 2); output channel 3*gi + j reads
    # weight[2*gi:2*gi+2, j].
    def ct_norms(w):
        return torch.stack([w[2 * gi:2 * gi + 2, j].norm() for gi in range(2) for j in range(3)])

    n0 = ct_norms(ct.weight.detach())
    c2 = float(n0.median())
    max_norm_(ct, c2)
    n1 = ct_norms(ct.weight.detach())
    assert torch.all(n1 <= c2 * (1 + 1e-6))
    kept = n0 <= c2
    assert torch.equal(n1[kept], n0[kept]) and torch.all(n1[~kept] > c2 * (1 - 1e-6))


def test_max_norm_skips_norms_biases_embeddings_and_handles_rnn():
    z = _Zoo()
    with torch.no_grad():
        for p in z.parameters():
            p.mul_(100.0)
    untouched = {id(p): p.detach().clone() for p in (z.emb.weight, z.bn.weight, z.fc.bias, z.act.weight)}
    MaxNorm(1.0)(z)
    for p in (z.emb.weight, z.bn.weight, z.fc.bias, z.act.weight):
        assert torch.equal(p, untouched[id(p)])
    for w in (z.lstm.weight_hh_l0, z.fc.weight, z.attn.in_proj_weight):
        assert torch.all(w.detach().flatten(1).norm(dim=1) <= 1.0 + 1e-6)


def test_max_norm_tensor_list_and_errors():
    w = _rows_with_norms([3.0, 1.0], 4)
    max_norm_([w], 1.5)
    torch.testing.assert_close(w.norm(dim=1), torch.tensor([1.5, 1.0]))
    with pytest.raises(ConfigError, match=r"expects weight tensors with >= 2 dims .*got shape \(3,\)"):
        max_norm_([torch.ones(3)], 1.0)
    with pytest.raises(ConfigError, match=r"c must be a finite number > 0, got 0"):
        max_norm_(nn.Linear(2, 2), 0)
    with pytest.raises(ConfigError, match=r"c must be a finite number > 0, got -3"):
        MaxNorm(-3)
    with pytest.raises(ConfigError, match=r"item 0 is int"):
        max_norm_([1], 1.0)
    assert repr(MaxNorm(3)) == "MaxNorm(c=3.0)"


def test_max_norm_channels_last_conv():
    conv = nn.Conv2d(2, 3, 3).to(memory_format=torch.channels_last)
    with torch.no_grad():
        conv.weight.mul_(50)
    max_norm_(conv, 0.5)
    assert torch.all(conv.weight.detach().flatten(1).norm(dim=1) <= 0.5 * (1 + 1e-6))
