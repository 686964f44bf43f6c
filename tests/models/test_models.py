"""Tests for droplab.models: specs, builders, dropout placement, errors, round trips."""

import dataclasses
import json
import math

import pytest
import torch
from scipy import stats
from torch import nn

import droplab.models as dm
from droplab.errors import ConfigError, DataError
from droplab.models import DropoutSpec, ModelSpec, build_model, count_parameters, parse_dropout
from droplab.nn import (
    ConcreteDropout,
    DropBlock1d,
    DropConnect,
    Dropout,
    EmbeddingDropout,
    LockedDropout,
    StochasticLayer,
    WeightDrop,
)

# Every place of every kind filled, each with a different layer where the kind allows it.
FULL = {
    "mlp": ("input=0.1:gaussian,hidden=0.5/0.3", None, (3, 5)),
    "cnn1d": ("input=0.1:spatial,hidden=0.2:dropblock:block_size=2", None, (2, 12)),
    "cnn2d": ("input=0.1,hidden=0.2:spatial", None, (1, 8, 6)),
    "gru": ("embedding=0.1,input=0.1:locked,hidden=0.2,recurrent=0.3:weight", 30, (12,)),
    "lstm": ("input=0.1,hidden=0.2:classic,recurrent=0.3", None, (12, 3)),
    "transformer": ("embedding=0.1,input=0.1,hidden=0.1:droppath,attention=0.2", 30, (12,)),
}


def full_spec(kind, **kw):
    text, vocab, _ = FULL[kind]
    hidden = (16,) if kind == "transformer" else (8, 8)
    return ModelSpec(kind=kind, hidden=hidden, vocab_size=vocab, dropout=parse_dropout(text), **kw)


def example_input(model, n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    if model.spec.vocab_size is not None:
        return torch.randint(0, model.spec.vocab_size, (n, *model.input_shape), generator=g)
    return torch.randn(n, *model.input_shape, generator=g)


def build_full(kind, n_outputs=4, **kw):
    return build_model(full_spec(kind, **kw), FULL[kind][2], n_outputs, seed=0)


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("kind", dm.KINDS)
@pytest.mark.parametrize("n_outputs", [1, 10])  # regression head, classification head
def test_output_shape_every_kind(kind, n_outputs):
    model = build_full(kind, n_outputs)
    for mode in (True, False):
        model.train(mode)
        out = model(example_input(model, n=3))
        assert out.shape == (3, n_outputs)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "kind, shape, x_shape",
    [
        ("mlp", (1, 4, 5), (2, 1, 4, 5)),
        ("cnn1d", (40,), (2, 40)),  # MNIST-1D: a channel axis is added
        ("cnn1d", (3, 40), (2, 3, 40)),
        ("cnn2d", (9, 7), (2, 9, 7)),
        ("cnn2d", (2, 9, 7), (2, 2, 9, 7)),
        ("gru", (40,), (2, 40)),  # a 40-step sequence of one feature
        ("lstm", (40, 3), (2, 40, 3)),
        ("transformer", (40,), (2, 40)),
        ("transformer", (40, 3), (2, 40, 3)),
    ],
)
def test_input_layouts(kind, shape, x_shape):
    hidden = (16,) if kind == "transformer" else (8, 8)
    model = build_model(ModelSpec(kind=kind, hidden=hidden), shape, 5, seed=0)
    assert model(torch.randn(x_shape)).shape == (2, 5)


@pytest.mark.parametrize("kind", ["gru", "lstm", "transformer"])
@pytest.mark.parametrize("readout", [None, "mean"])
def test_token_input(kind, readout):
    if kind == "transformer" and readout is None:
        readout = "cls"
    spec = ModelSpec(kind=kind, hidden=(16,), vocab_size=50, readout=readout, embed_dim=6)
    model = build_model(spec, (20,), 3, seed=0)
    assert isinstance(model.embedding, nn.Embedding)
    assert model(torch.randint(0, 50, (4, 20))).shape == (4, 3)


def test_rnn_accepts_any_length_transformer_up_to_max():
    rnn = build_model(ModelSpec(kind="gru", hidden=(8,)), (40,), 2, seed=0)
    assert rnn(torch.randn(3, 17)).shape == (3, 2)
    tf = build_model(ModelSpec(kind="transformer", hidden=(8,), heads=2), (40,), 2, seed=0)
    assert tf(torch.randn(3, 17)).shape == (3, 2)
    with pytest.raises(DataError, match=r"1 <= L <= 40.*got \(3, 41\)"):
        tf(torch.randn(3, 41))


def test_greydanus_mnist1d_cnn():
    # Greydanus 2020: conv(1->25, k5, s2, p1), conv(25->25, k3, s2, p1) x 2, Linear(125 -> 10).
    spec = ModelSpec(kind="cnn1d", hidden=(25, 25, 25), kernel_size=(5, 3, 3), stride=2, padding=1)
    model = build_model(spec, (40,), 10, seed=0)
    assert model.head.in_features == 25 * 5  # 40 -> 19 -> 10 -> 5 positions
    expected = (1 * 25 * 5 + 25) + 2 * (25 * 25 * 3 + 25) + (125 * 10 + 10)
    assert count_parameters(model) == expected
    # The brief's shorthand (kernel 5 everywhere, default padding k // 2) also reaches 5 positions.
    short = build_model(ModelSpec(kind="cnn1d", hidden=(25, 25, 25), stride=2), (40,), 10)
    assert short.head.in_features == 125


def test_count_parameters_trainable_only():
    model = build_model(ModelSpec(hidden=(4,)), (3,), 2, seed=0)
    assert count_parameters(model) == (3 * 4 + 4) + (4 * 2 + 2)
    model.head.weight.requires_grad_(False)
    assert count_parameters(model) == (3 * 4 + 4) + 2
    assert count_parameters(model, trainable_only=False) == (3 * 4 + 4) + (4 * 2 + 2)


# --------------------------------------------------------------------------- placement


def _call_order(model, x, pre=True):
    """Names of the submodules in the order they are entered (pre) or left (post)."""
    order, handles = [], []
    for name, module in model.named_modules():
        if not name:
            continue
        hook = (lambda n: lambda m, *a: order.append(n))(name)
        handles.append(
            module.register_forward_pre_hook(hook) if pre else module.register_forward_hook(hook)
        )
    model(x)
    for h in handles:
        h.remove()
    return order


@pytest.mark.parametrize("kind", dm.KINDS)
def test_describe_matches_forward_order(kind):
    model = build_full(kind).train()
    names = {id(m): n for n, m in model.named_modules()}
    placed = [names[id(m)] for _, m in model._placements]
    entered = []
    for name in _call_order(model, example_input(model)):
        if name in placed and name not in entered:
            entered.append(name)
    assert entered == placed
    labels = [label for label, _ in model.describe()]
    places = {label.split("[")[0] for label in labels}
    assert places == set(model.spec.dropout)
    for (label, text), (_, m) in zip(model.describe(), model._placements):
        assert isinstance(m, StochasticLayer)
        assert text.startswith(type(m).__name__ + "(") and "\n" not in text


@pytest.mark.parametrize("kind", dm.KINDS)
def test_nothing_after_output_layer(kind):
    model = build_full(kind).train()
    left = _call_order(model, example_input(model), pre=False)
    assert left[-1] == "head" and isinstance(model.head, nn.Linear)
    entered = _call_order(model, example_input(model))
    assert entered[-1] == "head"  # the head is a leaf: nothing runs inside or after it


def test_mlp_block_layout_and_layers():
    spec = ModelSpec(hidden=(6, 5), batch_norm=True, dropout=parse_dropout("input=0.2,hidden=0.5"))
    model = build_model(spec, (4,), 3, seed=0)
    assert isinstance(model.input_dropout, Dropout) and model.input_dropout.p == 0.2
    for block in model.blocks:
        assert list(dict(block.named_children())) == ["linear", "norm", "act", "dropout"]
        assert isinstance(block.norm, nn.BatchNorm1d)
        assert block.dropout.p == 0.5 and block.dropout.mode == "inverted"


def test_per_layer_rates_reach_layers():
    spec = ModelSpec(hidden=(5, 5, 5), dropout={"hidden": DropoutSpec((0.5, 0.25, 0.0), "classic")})
    model = build_model(spec, (4,), 2)
    assert [b.dropout.p for b in model.blocks] == [0.5, 0.25, 0.0]
    assert all(b.dropout.mode == "classic" for b in model.blocks)
    assert [t for _, t in model.describe()][1] == "Dropout(p=0.25, mode='classic', shared_axes=())"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_layer_rates_statistics(seed):
    # Sigmoid units are never exactly 0, so zeros after a dropout layer are dropped units.
    # n = 50 x 200 = 10000 units per layer: sd of the dropped fraction <= 0.005; 5 sigma.
    rates = (0.5, 0.1)
    spec = ModelSpec(
        hidden=(200, 200), activation="sigmoid", dropout={"hidden": DropoutSpec(rates)}
    )
    g = torch.Generator().manual_seed(seed)
    model = build_model(spec, (10,), 2, seed=seed, generator=g).train()
    outs = []
    hooks = [b.dropout.register_forward_hook(lambda m, i, o: outs.append(o)) for b in model.blocks]
    model(torch.randn(50, 10, generator=g))
    for h in hooks:
        h.remove()
    for p, out in zip(rates, outs):
        n = out.numel()
        dropped = int((out == 0).sum())
        assert abs(dropped / n - p) < 5 * math.sqrt(p * (1 - p) / n)
        assert stats.binomtest(dropped, n, p).pvalue > 1e-4


def test_cnn_layout_pool_before_dropout_and_batch_norm():
    spec = ModelSpec(kind="cnn2d", hidden=(4, 6), pool=2, batch_norm=True, dropout={"hidden": 0.1})
    model = build_model(spec, (3, 16, 16), 5, seed=0)
    for block in model.blocks:
        assert list(dict(block.named_children())) == ["conv", "norm", "act", "pool", "dropout"]
        assert isinstance(block.norm, nn.BatchNorm2d)
    assert model.head.in_features == 6 * 4 * 4  # 16 -> pool 8 -> pool 4
    mean = build_model(dataclasses.replace(spec, readout="mean"), (3, 16, 16), 5, seed=0)
    assert mean.head.in_features == 6


@pytest.mark.parametrize("kind", dm.KINDS)
def test_batch_norm_only_when_asked(kind):
    expected = {"mlp": 2, "cnn1d": 2, "cnn2d": 2, "gru": 1, "lstm": 1, "transformer": 1}[kind]
    bn = (nn.BatchNorm1d, nn.BatchNorm2d)
    with_bn = build_full(kind, batch_norm=True)
    without = build_full(kind)
    assert sum(isinstance(m, bn) for m in with_bn.modules()) == expected
    assert not any(isinstance(m, bn) for m in without.modules())
    if kind in ("gru", "lstm", "transformer"):
        assert isinstance(with_bn.norm, nn.BatchNorm1d)  # on the pooled vector, before the head
    assert with_bn(example_input(with_bn)).shape == (5, 4)


def test_rnn_recurrent_variants():
    locked = build_model(
        ModelSpec(kind="lstm", hidden=(8, 6), dropout={"recurrent": 0.3}), (10,), 2, seed=0
    )
    assert [type(m) for m in locked.recurrent_dropout] == [LockedDropout, LockedDropout]
    assert all(m.batch_first for m in locked.recurrent_dropout)
    assert [r.hidden_size for r in locked.rnns] == [8, 6]
    weight = build_model(
        ModelSpec(kind="gru", hidden=(8, 8), dropout=parse_dropout("recurrent=0.4:weight")),
        (10,),
        2,
    )
    assert all(isinstance(r, WeightDrop) and r.weights == ("weight_hh_l0",) for r in weight.rnns)
    assert all(isinstance(r.rnn, nn.GRU) and r.p == 0.4 for r in weight.rnns)
    assert len(weight.recurrent_dropout) == 0


def test_token_models_embedding_dropout():
    for kind in ("gru", "transformer"):
        model = build_full(kind)
        assert isinstance(model.embedding_dropout, EmbeddingDropout)
        assert model.describe()[0] == ("embedding", "EmbeddingDropout(p=0.1)")


def test_transformer_attention_and_branch_layers():
    model = build_full("transformer")
    for i, block in enumerate(model.blocks):
        assert isinstance(block.attn.attn_dropout, Dropout) and block.attn.attn_dropout.p == 0.2
        assert type(block.branch_dropout).__name__ == "DropPath"
    labels = [label for label, _ in model.describe()]
    assert labels == [
        "embedding", "input", "attention[0]", "hidden[0]", "attention[1]", "hidden[1]"
    ]


def test_dropconnect_wraps_hidden_layers():
    spec = ModelSpec(hidden=(6, 5), dropout=parse_dropout("hidden=0.3/0.2:dropconnect"))
    model = build_model(spec, (4,), 3, seed=0)
    assert [type(b.linear) for b in model.blocks] == [DropConnect, DropConnect]
    assert [b.linear.p for b in model.blocks] == [0.3, 0.2]
    assert isinstance(model.head, nn.Linear)  # the output layer is never wrapped
    moment = build_model(
        ModelSpec(
            kind="cnn1d",
            hidden=(4,),
            dropout=parse_dropout("hidden=0.3:dropconnect:inference=moment"),
        ),
        (10,),
        2,
        seed=0,
    )
    block = moment.blocks[0]
    assert "act" not in dict(block.named_children())  # moment matching needs the activation inside
    assert isinstance(block.conv.activation, nn.ReLU) and isinstance(block.conv.module, nn.Conv1d)


def test_dropblock_on_cnn_feature_maps():
    model = build_full("cnn1d")
    for block in model.blocks:
        assert isinstance(block.dropout, DropBlock1d) and block.dropout.block_size == 2


# --------------------------------------------------------------------------- modes, seeds


@pytest.mark.parametrize("kind", dm.KINDS)
def test_eval_is_deterministic_and_training_is_not(kind):
    model = build_full(kind)
    x = example_input(model)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


@pytest.mark.parametrize("kind", dm.KINDS)
def test_seeded_construction_identical(kind):
    torch.manual_seed(7)
    a = build_model(full_spec(kind), FULL[kind][2], 3)
    torch.manual_seed(7)
    b = build_model(full_spec(kind), FULL[kind][2], 3)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    state = torch.get_rng_state()
    c = build_model(full_spec(kind), FULL[kind][2], 3, seed=7)
    d = build_model(full_spec(kind), FULL[kind][2], 3, seed=7)
    e = build_model(full_spec(kind), FULL[kind][2], 3, seed=8)
    assert torch.equal(torch.get_rng_state(), state)  # seed= leaves the global RNG alone
    sc, sd, se = c.state_dict(), d.state_dict(), e.state_dict()
    assert all(torch.equal(sc[k], sd[k]) for k in sc)
    assert not all(torch.equal(sc[k], se[k]) for k in sc)


@pytest.mark.parametrize("kind", ["mlp", "cnn1d", "lstm", "transformer"])
def test_generator_drives_masks(kind):
    outs = []
    for _ in range(2):
        g = torch.Generator().manual_seed(3)
        model = build_model(full_spec(kind), FULL[kind][2], 3, seed=0, generator=g).train()
        state = torch.get_rng_state()
        outs.append(model(example_input(model)))
        assert torch.equal(torch.get_rng_state(), state)  # no mask came from the global RNG
    assert torch.equal(outs[0], outs[1])
    assert all(m.generator is g for _, m in model._placements)


def test_model_keeps_spec():
    spec = full_spec("gru")
    model = build_model(spec, (12,), 3)
    assert model.spec is spec and model.input_shape == (12,) and model.n_outputs == 3


def test_selu_gets_lecun_normal_init():
    # LeCun normal: std = 1/sqrt(fan_in); torch's default would give 1/sqrt(3 fan_in).
    # 400 x 300 = 120000 weights: the sample std has relative sd ~ 1/sqrt(2n) = 0.002; 5% margin.
    model = build_model(ModelSpec(hidden=(300,), activation="selu"), (400,), 2, seed=0)
    std = model.blocks[0].linear.weight.std().item()
    assert abs(std * math.sqrt(400) - 1) < 0.05
    assert torch.count_nonzero(model.blocks[0].linear.bias) == 0
    relu = build_model(ModelSpec(hidden=(300,)), (400,), 2, seed=0)
    assert abs(relu.blocks[0].linear.weight.std().item() * math.sqrt(3 * 400) - 1) < 0.05


def test_concrete_regularization_linked_to_consumers():
    spec = ModelSpec(hidden=(6, 5), dropout=parse_dropout("input=0.2:concrete,hidden=0.3:concrete"))
    model = build_model(spec, (4,), 2, seed=0)
    assert isinstance(model.input_dropout, ConcreteDropout)
    assert abs(model.input_dropout.p - 0.2) < 1e-6
    drops = [model.input_dropout, model.blocks[0].dropout, model.blocks[1].dropout]
    consumers = [model.blocks[0].linear, model.blocks[1].linear, model.head]
    expected = sum(d.regularization(c, k) for d, c, k in zip(drops, consumers, [4, 6, 5]))
    total = model.concrete_regularization()
    assert torch.allclose(total, expected)
    total.backward()
    assert all(d.p_logit.grad is not None for d in drops)
    plain = build_model(ModelSpec(hidden=(3,)), (4,), 2)
    assert plain.concrete_regularization().item() == 0.0


# --------------------------------------------------------------------------- specs and errors


def test_spec_defaults_and_resolution():
    places = {"recurrent": 0.2, "embedding": 0.1, "hidden": 0.3}
    spec = ModelSpec(kind="gru", hidden=[8], vocab_size=9, dropout=places)
    assert spec.hidden == (8,)
    assert spec.dropout["recurrent"] == DropoutSpec(0.2, "locked")
    assert spec.dropout["embedding"].layer == "embedding"
    assert spec.dropout["hidden"].layer == "dropout"


def test_parse_dropout_forms():
    d = parse_dropout(" hidden=0.5/0.3:gaussian , input=0.1,recurrent=0.25:weight:mode=classic ")
    assert d == {
        "hidden": DropoutSpec((0.5, 0.3), "gaussian"),
        "input": DropoutSpec(0.1),
        "recurrent": DropoutSpec(0.25, "weight", {"mode": "classic"}),
    }
    block = parse_dropout("hidden=0.2:dropblock:block_size=5:shared_channels=true")["hidden"]
    assert block.options == {"block_size": 5, "shared_channels": True}
    assert parse_dropout("") == {}


@pytest.mark.parametrize(
    "text, message",
    [
        ("hidden", r"cannot parse dropout entry 'hidden'; expected place=rate\[:layer\]"),
        ("hiden=0.3", r"dropout place must be one of .*; got 'hiden' \(did you mean 'hidden'\?\)"),
        ("hidden=abc", r"cannot parse rate 'abc' for place 'hidden' in 'hidden=abc'"),
        ("hidden=0.3,hidden=0.2", r"dropout place 'hidden' is given twice"),
        ("hidden=1.2", r"^dropout at place 'hidden': p must be in \[0, 1\), got 1.2$"),
        ("input=0.5/1.0", r"^dropout at place 'input': p\[1\] must be in \[0, 1\), got 1.0$"),
        (
            "hidden=0.3:gausian",
            r"layer must be one of .*; got 'gausian' \(did you mean 'gaussian'\?\)",
        ),
        ("hidden=0.3:dropblock:size", r"cannot parse option 'size'.*expected name=value"),
        (
            "hidden=0.3:dropblock:blocksize=3",
            r"unknown key 'blocksize' in options of layer 'dropblock' "
            r"\(did you mean 'block_size'\?\)",
        ),
        ("hidden=0.3:gaussian:x=1", r"layer 'gaussian' takes no options, got \['x'\]"),
        (
            "hidden=0.3:dropblock:block_size=0",
            r"dropblock option block_size must be a positive integer, got 0",
        ),
    ],
)
def test_parse_dropout_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_dropout(text)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "mpl"}, r"kind must be one of 'mlp', .*; got 'mpl' \(did you mean 'mlp'\?\)"),
        ({"activation": "relu6"}, r"activation must be one of .*got 'relu6'"),
        (
            {"dropout": {"hiden": 0.1}},
            r"unknown dropout place 'hiden' \(did you mean 'hidden'\?\); places for mlp: input, "
            r"hidden",
        ),
        (
            {"dropout": {"recurrent": 0.1}},
            r"dropout place 'recurrent' does not exist in a mlp model; "
            r"recurrent dropout exists only in gru and lstm models; places for mlp: input, hidden",
        ),
        (
            {"kind": "gru", "dropout": {"attention": 0.1}},
            r"'attention' does not exist in a gru model; "
            r"attention dropout exists only in transformer models",
        ),
        (
            {"kind": "lstm", "dropout": {"embedding": 0.1}},
            r"dropout place 'embedding' needs token input: set vocab_size",
        ),
        (
            {"dropout": {"hidden": DropoutSpec(0.1, "locked")}},
            r"dropout layer 'locked' cannot go at place 'hidden' of a mlp model; it goes at input, "
            r"recurrent in gru, lstm, transformer models",
        ),
        (
            {"dropout": {"input": DropoutSpec(0.1, "spatial")}},
            r"dropout layer 'spatial' cannot go at place 'input' of a mlp model; it goes at input, "
            r"hidden in cnn1d, cnn2d models",
        ),
        (
            {"dropout": {"hidden": 1.2}},
            r"^dropout at place 'hidden': p must be in \[0, 1\), got 1.2$",
        ),
        (
            {"dropout": {"input": -0.1}},
            r"^dropout at place 'input': p must be in \[0, 1\), got -0.1$",
        ),
        (
            {"hidden": (4, 4), "dropout": {"hidden": (0.1, 0.2, 0.3)}},
            r"hidden dropout lists 3 rates but the mlp model has 2 hidden layers",
        ),
        (
            {"dropout": {"input": (0.1, 0.2)}},
            r"per-layer rates are accepted at place 'hidden' only, got \[0.1, "
            r"0.2\] at place 'input'",
        ),
        (
            {"hidden": (), "dropout": {"hidden": 0.1}},
            r"dropout place 'hidden' needs at least one hidden layer",
        ),
        (
            {"dropout": {"hidden": DropoutSpec(0.0, "concrete")}},
            r"concrete dropout at place 'hidden' learns its rate from an initial p in \(0, 1\); "
            r"got p=0.0",
        ),
        (
            {
                "batch_norm": True,
                "dropout": {"hidden": DropoutSpec(0.1, "dropconnect", {"inference": "moment"})},
            },
            r"inference='moment' .* cannot run with batch_norm",
        ),
        ({"hidden": (0,)}, r"hidden\[0\] must be a positive integer, got 0"),
        ({"hidden": 5}, r"hidden must be a list of sizes, got 5"),
        ({"kind": "cnn1d", "hidden": ()}, r"hidden must list at least one size for kind 'cnn1d'"),
        (
            {"kind": "cnn1d", "hidden": (4, 4), "kernel_size": (3, 3, 3)},
            r"kernel_size lists 3 values but there are 2 conv layers",
        ),
        (
            {"kind": "transformer", "hidden": (10,), "heads": 4},
            r"d_model hidden\[0\]=10 must be divisible by heads=4",
        ),
        (
            {"kind": "transformer", "hidden": (8, 8)},
            r"transformer hidden must be \(d_model,\), got \(8, 8\)",
        ),
        (
            {"vocab_size": 10},
            r"vocab_size \(token input\) applies to gru, lstm and transformer, not to kind 'mlp'",
        ),
        (
            {"kind": "gru", "readout": "cls"},
            r"readout for gru must be one of 'last', 'mean'; got 'cls'",
        ),
        ({"readout": "mean"}, r"readout does not apply to kind 'mlp'"),
        ({"batch_norm": 1}, r"batch_norm must be true or false, got 1"),
        ({"pool": 0}, r"pool must be a positive integer, got 0"),
    ],
)
def test_spec_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ModelSpec(**kwargs)


def test_build_errors():
    spec = ModelSpec(kind="cnn1d", hidden=(4, 4, 4), kernel_size=5, padding=0)  # 10 -> 6 -> 2 -> 0
    msg = r"input of spatial size \(10,\) shrinks to \(0,\) after conv layer 2"
    with pytest.raises(ConfigError, match=msg):
        build_model(spec, (10,), 2)
    big = ModelSpec(
        kind="cnn1d", hidden=(4,), stride=2, dropout=parse_dropout("hidden=0.1:dropblock")
    )
    msg = (
        r"dropblock block_size=7 does not fit the output of conv layer 0 of spatial size "
        r"\(5,\); set the dropblock option block_size <= 5"
    )
    with pytest.raises(ConfigError, match=msg):
        build_model(big, (10,), 2)
    msg = r"cnn2d input_shape must be \(C, H, W\) or \(H, W\), got \(10,\)"
    with pytest.raises(ConfigError, match=msg):
        build_model(ModelSpec(kind="cnn2d", hidden=(4,)), (10,), 2)
    with pytest.raises(ConfigError, match=r"token input_shape must be \(L,\), got \(10, 2\)"):
        build_model(ModelSpec(kind="gru", hidden=(4,), vocab_size=5), (10, 2), 2)
    with pytest.raises(ConfigError, match=r"n_outputs must be a positive integer, got 0"):
        build_model(ModelSpec(), (10,), 0)
    with pytest.raises(ConfigError, match=r"input_shape\[1\] must be a positive integer, got 0"):
        build_model(ModelSpec(), (10, 0), 2)
    with pytest.raises(ConfigError, match=r"spec must be a ModelSpec or a dict, got str"):
        build_model("mlp", (10,), 2)


def test_forward_input_errors():
    mlp = build_model(ModelSpec(hidden=(4,)), (1, 28, 28), 2)
    msg = r"mlp model expects input of shape \(N, 1, 28, 28\), got \(3, 784\)"
    with pytest.raises(DataError, match=msg):
        mlp(torch.randn(3, 784))
    lstm = build_model(ModelSpec(kind="lstm", hidden=(4,)), (10, 3), 2)
    msg = r"lstm model expects input of shape \(N, L, 3\), got \(2, 10, 4\)"
    with pytest.raises(DataError, match=msg):
        lstm(torch.randn(2, 10, 4))
    tok = build_model(ModelSpec(kind="gru", hidden=(4,), vocab_size=5), (10,), 2)
    with pytest.raises(DataError, match=r"token ids must be in \[0, 5\), got ids in \[0, 7\]"):
        tok(torch.tensor([[0, 7]]))
    msg = r"token input must be an integer tensor, got dtype torch.float32"
    with pytest.raises(DataError, match=msg):
        tok(torch.zeros(1, 10))


# --------------------------------------------------------------------------- round trips


ROUND_TRIP = [
    ModelSpec(),
    full_spec("mlp"),
    full_spec("cnn1d", batch_norm=True, kernel_size=(3, 5), padding=1),
    full_spec("gru", readout="mean", embed_dim=4),
    full_spec("transformer", ff_dim=32, heads=2, layers=2),
    ModelSpec(
        kind="gru",
        hidden=(8,),
        dropout={
            "recurrent": DropoutSpec(0.2, "weight", {"weights": ["weight_hh_l0", "weight_ih_l0"]})
        },
    ),
]


@pytest.mark.parametrize("spec", ROUND_TRIP, ids=lambda s: s.kind)
def test_to_dict_from_dict_round_trip(spec):
    d = spec.to_dict()
    text = json.dumps(d)  # plain types only (also what TOML and SQLite rows accept)
    assert "null" not in text  # TOML has no null: None fields are left out
    back = ModelSpec.from_dict(json.loads(text))
    assert back == spec
    assert back.to_dict() == d
    model = build_model(d, FULL[spec.kind][2], 2, seed=0)  # a dict spec is accepted too
    assert model.spec == spec


def test_from_dict_accepts_toml_style_tables():
    spec = ModelSpec.from_dict(
        {
            "kind": "mlp",
            "hidden": [8, 8],
            "dropout": {"input": 0.2, "hidden": {"p": [0.5, 0.4], "layer": "gaussian"}},
        }
    )
    assert spec.hidden == (8, 8)
    assert spec.dropout["hidden"] == DropoutSpec((0.5, 0.4), "gaussian")
    assert spec.dropout["input"] == DropoutSpec(0.2, "dropout")


@pytest.mark.parametrize(
    "d, message",
    [
        (
            {"kind": "mlp", "hiden": [8]},
            r"unknown key 'hiden' in model spec \(did you mean 'hidden'\?\)",
        ),
        ({"dropout": {"hidden": {"rate": 0.1}}}, r"unknown key 'rate' in dropout entry"),
        ({"dropout": {"hidden": "0.1"}}, r"a dropout entry must be a number or a table, got '0.1'"),
        ({"dropout": [0.1]}, r"dropout must be a table of place -> dropout spec"),
        ("mlp", r"a model spec must be a table, got 'mlp'"),
    ],
)
def test_from_dict_errors(d, message):
    with pytest.raises(ConfigError, match=message):
        ModelSpec.from_dict(d)


def test_public_api_documented():
    for name in dm.__all__:
        obj = getattr(dm, name)
        if callable(obj):
            assert obj.__doc__ and obj.__doc__.strip(), name


def test_dropout_spec_direct():
    assert DropoutSpec(0.2).to_dict() == {"p": 0.2, "options": {}}  # no None for TOML
    assert DropoutSpec.from_dict(DropoutSpec(0.2).to_dict()) == DropoutSpec(0.2)
    assert DropoutSpec(0.1, "weight", {"weights": "weight_hh_l0"}).options == {
        "weights": ("weight_hh_l0",)
    }
    assert DropoutSpec((0.5, 0.25)).rate(1) == 0.25 and DropoutSpec(0.3).rate(2) == 0.3
    with pytest.raises(ConfigError, match=r"^p must be in \[0, 1\), got 1.0$"):
        DropoutSpec(1.0)
    with pytest.raises(ConfigError, match=r"non-empty list of per-layer rates, got \[\]"):
        DropoutSpec(())
    with pytest.raises(ConfigError, match=r"options \['block_size'\] need an explicit layer"):
        DropoutSpec(0.1, None, {"block_size": 3})
    with pytest.raises(ConfigError, match=r"dropconnect option inference must be one of"):
        DropoutSpec(0.1, "dropconnect", {"inference": "avg"})
