"""Recurrent dropout: locked, embedding (word type) and WeightDrop (DropConnect on RNN weights).

Binomial checks: scipy's exact test at alpha = 1e-4 per seeded check (see test_dropout.py for
the reasoning); mean checks: k = 5 standard errors per element.
"""

import copy
import math
import warnings

import pytest
import torch
from scipy.stats import binomtest
from torch import nn

import droplab.functional as F
import droplab.nn as dn
from droplab.errors import ConfigError

SEEDS = [0, 1, 2, 3, 4]
ALPHA = 1e-4
K_SIGMA = 5.0


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _build(factory, seed=0):
    """Build a module with seeded initialization without touching the global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def _assert_binomial(k, n, p):
    pvalue = binomtest(int(k), int(n), p).pvalue
    assert pvalue > ALPHA, f"{k}/{n} dropped, expected rate {p}: binomial p-value {pvalue:.2e}"


# ---- locked dropout -----------------------------------------------------------------------

@pytest.mark.parametrize("batch_first", [False, True])
def test_locked_dropout_reuses_one_mask_at_every_time_step(batch_first):
    t_dim = 1 if batch_first else 0
    shape = (20, 7, 30) if batch_first else (7, 20, 30)
    x = torch.rand(shape, generator=_gen(0)) + 0.5
    y = F.locked_dropout(x, 0.5, batch_first=batch_first, generator=_gen(1))
    ratio = y / x
    first = ratio.narrow(t_dim, 0, 1)
    assert torch.allclose(ratio, first.expand_as(ratio))
    assert 0 < (first == 0).sum() < first.numel()
    # Different examples get different masks.
    per_example = first.squeeze(t_dim)
    assert not torch.equal(per_example[0], per_example[1])


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_locked_dropout_drop_fraction_is_binomial_per_example_and_feature(p):
    for seed in SEEDS:
        y = F.locked_dropout(torch.ones(3, 50, 80), p, generator=_gen(seed))
        flags = y[0] == 0
        _assert_binomial(flags.sum(), flags.numel(), p)


def test_locked_dropout_masks_nest_and_are_seeded():
    x = torch.ones(4, 30, 40)
    for seed in SEEDS:
        low = F.locked_dropout(x, 0.2, generator=_gen(seed)) == 0
        high = F.locked_dropout(x, 0.5, generator=_gen(seed)) == 0
        assert not (low & ~high).any()
        assert high.sum() > low.sum()
    assert torch.equal(
        F.locked_dropout(x, 0.3, generator=_gen(1)), F.locked_dropout(x, 0.3, generator=_gen(1))
    )


@pytest.mark.parametrize("p", [0.3, 0.7])
def test_locked_dropout_preserves_the_mean(p):
    n = 4000
    for seed in SEEDS:
        x = torch.randn(5, 1, 6, generator=_gen(10 + seed), dtype=torch.float64)
        y = F.locked_dropout(x.expand(5, n, 6).contiguous(), p, generator=_gen(seed))
        se = x.abs() * math.sqrt(p / (1 - p)) / math.sqrt(n)
        assert ((y.mean(1, keepdim=True) - x).abs() <= K_SIGMA * se).all()


def test_locked_dropout_gradient_only_through_kept_units():
    p = 0.4
    x = (torch.rand(6, 10, 12, generator=_gen(0)) + 0.5).requires_grad_()
    y = F.locked_dropout(x, p, generator=_gen(1))
    y.sum().backward()
    dropped = y.detach() == 0
    assert torch.equal(x.grad[dropped], torch.zeros_like(x.grad[dropped]))
    torch.testing.assert_close(x.grad[~dropped], torch.full_like(x.grad[~dropped], 1 / (1 - p)))


def test_locked_dropout_identity_cases_and_p_close_to_one():
    x = torch.randn(3, 4, 5)
    assert F.locked_dropout(x, 0.5, training=False) is x
    assert F.locked_dropout(x, 0.0) is x
    assert dn.LockedDropout(0.5).eval()(x) is x
    y = F.locked_dropout(x, 0.999, generator=_gen(0))
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_locked_dropout_dtype(dtype):
    x32 = torch.rand(4, 6, 8, generator=_gen(0)) + 0.5
    y = F.locked_dropout(x32.to(dtype), 0.4, generator=_gen(1))
    assert y.dtype == dtype and y.shape == x32.shape
    assert torch.equal(y == 0, F.locked_dropout(x32, 0.4, generator=_gen(1)) == 0)


@pytest.mark.parametrize(
    ("batch_first", "layout"), [(False, r"\(T, N, F\)"), (True, r"\(N, T, F\)")]
)
def test_locked_dropout_rank_error_states_layout(batch_first, layout):
    msg = rf"locked_dropout expects a 3D input {layout}, got 2D input of shape \(4, 5\)"
    with pytest.raises(ConfigError, match=msg):
        F.locked_dropout(torch.ones(4, 5), 0.5, batch_first=batch_first)
    with pytest.raises(ConfigError, match=msg):
        dn.LockedDropout(0.5, batch_first=batch_first)(torch.ones(4, 5))


def test_locked_dropout_module_matches_function():
    x = torch.rand(8, 5, 3, generator=_gen(0))
    layer = dn.LockedDropout(0.3, batch_first=True, generator=_gen(4))
    assert torch.equal(layer(x), F.locked_dropout(x, 0.3, batch_first=True, generator=_gen(4)))
    assert repr(layer) == "LockedDropout(p=0.3, batch_first=True)"


# ---- embedding dropout --------------------------------------------------------------------

def _embedded(seed, vocab=500, shape=(40, 50), dim=6, dtype=torch.float32):
    g = _gen(seed)
    ids = torch.randint(0, vocab, shape, generator=g)
    x = (torch.rand(*shape, dim, generator=g) + 0.5).to(dtype)
    return x, ids


def test_embedding_dropout_drops_word_types_not_positions():
    p = 0.5
    for seed in SEEDS:
        x, ids = _embedded(seed, vocab=20)
        y = F.embedding_dropout(x, ids, p, generator=_gen(100 + seed))
        ratio = y / x
        # Every position of one id has the same factor on every coordinate.
        assert torch.allclose(ratio, ratio[..., :1].expand_as(ratio))
        factor = ratio[..., 0]
        for token in ids.unique():
            values = factor[ids == token]
            assert torch.equal(values, values[:1].expand_as(values))
        assert set(factor.unique().tolist()) == {0.0, 1 / (1 - p)}


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_embedding_dropout_drop_fraction_is_binomial_over_word_types(p):
    for seed in SEEDS:
        x, ids = _embedded(seed)
        y = F.embedding_dropout(x, ids, p, generator=_gen(100 + seed))
        types = ids.unique()
        first = torch.stack([(ids == t).nonzero()[0] for t in types])
        dropped = y[first[:, 0], first[:, 1], 0] == 0
        _assert_binomial(dropped.sum(), types.numel(), p)


def test_embedding_dropout_masks_nest_and_are_seeded():
    for seed in SEEDS:
        x, ids = _embedded(seed, vocab=100)
        low = F.embedding_dropout(x, ids, 0.2, generator=_gen(seed)) == 0
        high = F.embedding_dropout(x, ids, 0.5, generator=_gen(seed)) == 0
        assert not (low & ~high).any()
        assert high.sum() > low.sum()
    a = F.embedding_dropout(x, ids, 0.3, generator=_gen(1))
    assert torch.equal(a, F.embedding_dropout(x, ids, 0.3, generator=_gen(1)))
    assert not torch.equal(a, F.embedding_dropout(x, ids, 0.3, generator=_gen(2)))


@pytest.mark.parametrize("p", [0.3, 0.7])
def test_embedding_dropout_preserves_the_mean(p):
    n = 4000
    for seed in SEEDS:
        # n independent batches, each holding one occurrence of ids 0..4 (so 5 types each).
        x = torch.randn(5, 3, generator=_gen(20 + seed), dtype=torch.float64)
        ids = torch.arange(5).repeat(n, 1) + 5 * torch.arange(n).unsqueeze(1)
        y = F.embedding_dropout(x.expand(n, 5, 3).contiguous(), ids, p, generator=_gen(seed))
        se = x.abs() * math.sqrt(p / (1 - p)) / math.sqrt(n)
        assert ((y.mean(0) - x).abs() <= K_SIGMA * se).all()


def test_embedding_dropout_gradient_only_through_kept_types():
    p = 0.5
    x, ids = _embedded(0, vocab=30)
    x.requires_grad_()
    y = F.embedding_dropout(x, ids, p, generator=_gen(1))
    y.sum().backward()
    dropped = y.detach() == 0
    assert torch.equal(x.grad[dropped], torch.zeros_like(x.grad[dropped]))
    torch.testing.assert_close(x.grad[~dropped], torch.full_like(x.grad[~dropped], 2.0))


def test_embedding_dropout_with_an_embedding_layer_and_module():
    emb = _build(lambda: nn.Embedding(50, 8))
    ids = torch.randint(0, 50, (7, 3), generator=_gen(0))
    drop = dn.EmbeddingDropout(0.4, generator=_gen(3))
    e = drop(emb(ids), ids)
    assert e.shape == (7, 3, 8)
    assert torch.equal(e, F.embedding_dropout(emb(ids), ids, 0.4, generator=_gen(3)))
    e.sum().backward()
    assert emb.weight.grad is not None
    assert repr(drop) == "EmbeddingDropout(p=0.4)"


def test_embedding_dropout_identity_cases_and_p_close_to_one():
    x, ids = _embedded(0)
    assert F.embedding_dropout(x, ids, 0.5, training=False) is x
    assert F.embedding_dropout(x, ids, 0.0) is x
    assert dn.EmbeddingDropout(0.5).eval()(x, ids) is x
    assert torch.isfinite(F.embedding_dropout(x, ids, 0.999, generator=_gen(0))).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_embedding_dropout_dtype(dtype):
    x, ids = _embedded(0)
    y = F.embedding_dropout(x.to(dtype), ids, 0.4, generator=_gen(1))
    assert y.dtype == dtype
    assert torch.equal(y == 0, F.embedding_dropout(x, ids, 0.4, generator=_gen(1)) == 0)


def test_embedding_dropout_shape_mismatch_states_expected_and_actual():
    ids = torch.zeros(2, 3, dtype=torch.long)
    msg = (
        r"embedding_dropout expects x of shape \(\*ids.shape, D\) = \(2, 3, D\) for ids of "
        r"shape \(2, 3\), got x of shape \(2, 4, 5\)"
    )
    with pytest.raises(ConfigError, match=msg):
        F.embedding_dropout(torch.ones(2, 4, 5), ids, 0.5)
    with pytest.raises(ConfigError, match=r"got x of shape \(2, 3\)$"):
        dn.EmbeddingDropout(0.5)(torch.ones(2, 3), ids)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bool])
def test_embedding_dropout_ids_must_be_integers(dtype):
    with pytest.raises(ConfigError, match=rf"ids must be an integer tensor, got dtype {dtype}"):
        F.embedding_dropout(torch.ones(2, 3, 4), torch.zeros(2, 3, dtype=dtype), 0.5)


@pytest.mark.parametrize("bad", [1.0, -0.1])
def test_recurrent_functions_reject_bad_p(bad):
    msg = rf"^p must be in \[0, 1\), got {bad}$"
    with pytest.raises(ConfigError, match=msg):
        F.locked_dropout(torch.ones(2, 3, 4), bad)
    with pytest.raises(ConfigError, match=msg):
        F.embedding_dropout(torch.ones(2, 3), torch.zeros(2, dtype=torch.long), bad)
    with pytest.raises(ConfigError, match=msg):
        dn.LockedDropout(bad)
    with pytest.raises(ConfigError, match=msg):
        dn.EmbeddingDropout(bad)
    with pytest.raises(ConfigError, match=msg):
        dn.WeightDrop(nn.LSTM(2, 3), bad)


# ---- WeightDrop ---------------------------------------------------------------------------

def _keep_mask(shape, p, seed):
    """The mask WeightDrop draws for one weight (droplab's documented u < p convention)."""
    return (torch.rand(shape, generator=_gen(seed)) >= p).float()


def _manual_rnn(x, w_ih, w_hh, b_ih, b_hh):
    h = x.new_zeros(x.shape[1], w_hh.shape[1])
    outs = []
    for x_t in x:
        h = torch.tanh(x_t @ w_ih.T + b_ih + h @ w_hh.T + b_hh)
        outs.append(h)
    return torch.stack(outs)


def _manual_lstm(x, w_ih, w_hh, b_ih, b_hh):
    hidden = w_hh.shape[1]
    h = x.new_zeros(x.shape[1], hidden)
    c = x.new_zeros(x.shape[1], hidden)
    outs = []
    for x_t in x:
        gates = x_t @ w_ih.T + b_ih + h @ w_hh.T + b_hh
        i, f, g, o = gates.split(hidden, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs)


@pytest.mark.parametrize(("kind", "manual"), [(nn.RNN, _manual_rnn), (nn.LSTM, _manual_lstm)])
@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_weight_drop_matches_a_manual_recurrence_with_one_fixed_mask(kind, manual, mode):
    p, seed = 0.4, 11
    rnn = _build(lambda: kind(5, 6).double())
    x = torch.randn(7, 3, 5, dtype=torch.float64, generator=_gen(1))
    weights = torch.randn(7, 3, 6, dtype=torch.float64, generator=_gen(2))

    wd = dn.WeightDrop(rnn, p, mode=mode, generator=_gen(seed))
    out = wd(x)[0]
    (out * weights).sum().backward()

    leaves = {n: q.detach().clone().requires_grad_() for n, q in rnn.named_parameters()}
    mask = _keep_mask(rnn.weight_hh_l0.shape, p, seed).double()
    scale = 1 / (1 - p) if mode == "inverted" else 1.0
    w_hh = leaves["weight_hh_l0"] * mask * scale
    ref = manual(x, leaves["weight_ih_l0"], w_hh, leaves["bias_ih_l0"], leaves["bias_hh_l0"])
    (ref * weights).sum().backward()

    torch.testing.assert_close(out, ref)
    for name, param in rnn.named_parameters():
        torch.testing.assert_close(param.grad, leaves[name].grad)
    dropped = mask == 0
    assert 0 < dropped.sum() < dropped.numel()
    assert (rnn.weight_hh_l0.grad[dropped] == 0).all()


def test_weight_drop_eval_uses_the_raw_weights_or_the_classic_scaling():
    rnn = _build(lambda: nn.GRU(4, 5))
    x = torch.randn(6, 2, 4, generator=_gen(0))
    ref = rnn(x)[0]
    assert torch.equal(dn.WeightDrop(rnn, 0.5).eval()(x)[0], ref)
    assert torch.equal(dn.WeightDrop(rnn, 0.0)(x)[0], ref)

    scaled = copy.deepcopy(rnn)
    with torch.no_grad():
        scaled.weight_hh_l0.mul_(0.5)
    classic = dn.WeightDrop(rnn, 0.5, mode="classic").eval()
    torch.testing.assert_close(classic(x)[0], scaled(x)[0])


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU, nn.RNN])
def test_weight_drop_leaves_stored_parameters_alone_and_warns_nothing(kind):
    rnn = _build(lambda: kind(4, 5, num_layers=2, bidirectional=True, batch_first=True))
    names = ("weight_hh_l0", "weight_hh_l1", "weight_hh_l0_reverse")
    before = {n: (q, q.detach().clone()) for n, q in rnn.named_parameters()}
    wd = dn.WeightDrop(rnn, 0.5, weights=names, generator=_gen(0))
    x = torch.randn(3, 6, 4, generator=_gen(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = wd(x)[0]
        out.sum().backward()
        wd(x)  # a second call after backward, then the plain module
        rnn(x)
    for name, param in rnn.named_parameters():
        obj, value = before[name]
        assert param is obj and isinstance(param, nn.Parameter)
        assert torch.equal(param, value)
    assert list(wd.parameters()) == list(rnn.parameters())
    assert set(wd.state_dict()) == {f"rnn.{n}" for n in rnn.state_dict()}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (cuDNN weight layout)")
def test_weight_drop_warns_nothing_on_cuda():
    rnn = nn.LSTM(4, 5, num_layers=2).cuda()
    wd = dn.WeightDrop(rnn, 0.5, weights=("weight_hh_l0", "weight_hh_l1"))
    x = torch.randn(6, 3, 4, device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(2):
            wd(x)[0].sum().backward()
        rnn(x)


def test_weight_drop_passes_hidden_state_and_kwargs_through():
    rnn = _build(lambda: nn.LSTM(3, 4))
    h0 = (torch.randn(1, 2, 4, generator=_gen(1)), torch.randn(1, 2, 4, generator=_gen(2)))
    x = torch.randn(5, 2, 3, generator=_gen(3))
    wd = dn.WeightDrop(rnn, 0.5).eval()
    out, (h, c) = wd(x, h0)
    torch.testing.assert_close(out, rnn(x, h0)[0])
    wd.train()
    out_kw, _ = wd(x, hx=h0)
    assert out_kw.shape == out.shape


def test_weight_drop_draws_a_fresh_mask_per_call_and_is_seeded():
    rnn = _build(lambda: nn.RNN(3, 8))
    x = torch.randn(4, 2, 3, generator=_gen(3))
    wd = dn.WeightDrop(rnn, 0.5, generator=_gen(5))
    first, second = wd(x)[0], wd(x)[0]
    assert not torch.equal(first, second)
    wd.generator = _gen(5)
    assert torch.equal(wd(x)[0], first)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_weight_drop_drop_fraction_is_binomial(p):
    rnn = _build(lambda: nn.LSTM(4, 32))
    x = torch.randn(5, 3, 4, generator=_gen(3))
    for seed in SEEDS:
        rnn.zero_grad()
        dn.WeightDrop(rnn, p, generator=_gen(seed))(x)[0].sum().backward()
        # A kept recurrent weight gets a nonzero gradient almost surely; a dropped one exactly 0.
        dropped = rnn.weight_hh_l0.grad == 0
        _assert_binomial(dropped.sum(), dropped.numel(), p)
        assert (rnn.weight_ih_l0.grad != 0).all()


def test_weight_drop_trains_the_raw_weights_only_where_kept():
    rnn = _build(lambda: nn.LSTM(3, 6))
    wd = dn.WeightDrop(rnn, 0.5, generator=_gen(0))
    opt = torch.optim.SGD(wd.parameters(), lr=0.1)
    before = rnn.weight_hh_l0.detach().clone()
    wd(torch.randn(4, 2, 3, generator=_gen(3)))[0].pow(2).sum().backward()
    opt.step()
    moved = rnn.weight_hh_l0.detach() != before
    kept = _keep_mask(before.shape, 0.5, 0).bool()
    assert torch.equal(moved, kept)


def test_weight_drop_works_on_other_modules():
    lin = _build(lambda: nn.Linear(10, 4))
    wd = dn.WeightDrop(lin, 0.5, weights="weight", generator=_gen(0))
    x = torch.randn(3, 10, generator=_gen(3))
    y = wd(x)
    mask = _keep_mask(lin.weight.shape, 0.5, 0)
    torch.testing.assert_close(y, x @ (lin.weight * mask * 2).T + lin.bias)


def test_weight_drop_unknown_weight_lists_valid_ones():
    msg = (
        r"unknown weight 'weight_hh_10' for LSTM \(did you mean 'weight_hh_l0'\?\); "
        r"valid weights: weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0"
    )
    with pytest.raises(ConfigError, match=msg):
        dn.WeightDrop(nn.LSTM(2, 3), 0.5, weights=("weight_hh_10",))


def test_weight_drop_argument_errors():
    with pytest.raises(ConfigError, match=r"rnn must be a torch.nn.Module, got str"):
        dn.WeightDrop("lstm", 0.5)
    with pytest.raises(ConfigError, match=r"weights must name at least one parameter, got \(\)"):
        dn.WeightDrop(nn.LSTM(2, 3), 0.5, weights=())
    with pytest.raises(ConfigError, match=r"weights must not repeat a name"):
        dn.WeightDrop(nn.LSTM(2, 3), 0.5, weights=("weight_hh_l0", "weight_hh_l0"))
    with pytest.raises(ConfigError, match=r"unknown weight 3 for LSTM; valid weights"):
        dn.WeightDrop(nn.LSTM(2, 3), 0.5, weights=(3,))
    with pytest.raises(ConfigError, match=r"mode must be one of 'inverted', 'classic'; got 'x'"):
        dn.WeightDrop(nn.LSTM(2, 3), 0.5, mode="x")


def test_weight_drop_repr_and_declaration():
    wd = dn.WeightDrop(nn.GRU(2, 3), 0.25, weights=("weight_hh_l0", "weight_ih_l0"))
    text = repr(wd)
    assert "p=0.25, weights=('weight_hh_l0', 'weight_ih_l0'), mode='inverted'" in text
    assert "(rnn): GRU(2, 3)" in text
    assert dn.WeightDrop.mean_preserving is False
