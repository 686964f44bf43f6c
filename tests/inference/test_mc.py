"""MC dropout: mc_mode, mc_predict, predict, mc_vs_weight_scaling.

The must-show test trains a small MLP with batch norm and dropout on MNIST-1D and checks that
MC dropout leaves batch norm alone and that MC accuracy approaches weight-scaling accuracy.
"""

import itertools
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import binomtest
from torch import nn

import droplab
import droplab.nn as dn
from droplab.errors import ConfigError, DataError, DroplabWarning
from droplab.inference import MCResult, mc_mode, mc_predict, mc_vs_weight_scaling, predict


def _buffers(model):
    return {k: v.detach().clone() for k, v in model.named_buffers()}


def _bitwise_equal(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(
        a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)
    )


# --------------------------------------------------------------------------------------------
# Must show: MNIST-1D, dropout + batch norm
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained():
    """MLP 40-128-128-10, BatchNorm + hidden dropout 0.5, Adam 12 epochs on MNIST-1D."""
    from droplab.data import load_dataset
    from droplab.models import ModelSpec, build_model

    splits = load_dataset("mnist1d", seed=0)
    spec = ModelSpec(kind="mlp", hidden=(128, 128), batch_norm=True, dropout={"hidden": 0.5})
    model = build_model(spec, splits.input_shape, splits.n_outputs, seed=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # masks and order of this test's own training loop
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.train()
        for _ in range(12):
            for idx in torch.randperm(len(splits.x_train)).split(100):
                loss = F.cross_entropy(model(splits.x_train[idx]), splits.y_train[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    model.eval()
    return model, splits


def test_mc_predict_keeps_batchnorm_in_eval_with_running_stats_unchanged(trained):
    model, splits = trained
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    drops = [m for m in model.modules() if isinstance(m, dn.Dropout)]
    assert len(norms) == 2 and len(drops) == 2
    seen = {"norm": [], "drop": []}
    hooks = [m.register_forward_pre_hook(lambda m, a: seen["norm"].append(m.training)) for m in norms]
    hooks += [m.register_forward_pre_hook(lambda m, a: seen["drop"].append(m.training)) for m in drops]
    before = _buffers(model)
    try:
        for start_mode in (False, True):  # called from eval mode and from training mode
            model.train(start_mode)
            # cache=False: the plain loop, whose calls are counted below (the cached path runs
            # the prefix once per chunk and stacks the passes; it must give the same bits)
            result = mc_predict(model, splits.x_test, samples=20, batch_size=300, seed=0, cache=False)
            assert all(m.training == start_mode for m in model.modules())  # modes restored
            fast = mc_predict(model, splits.x_test, samples=20, batch_size=300, seed=0)
            assert all(m.training == start_mode for m in model.modules())
            assert torch.equal(fast.mean, result.mean) and torch.equal(fast.variance, result.variance)
    finally:
        for h in hooks:
            h.remove()
        model.eval()
    # BN in eval at every call (the MC passes and mc_predict's probe pass); dropout on in each
    # of the 2 layers x 20 samples x 4 chunks x 2 calls (the probe pass sees it off).
    assert set(seen["norm"]) == {False}
    assert seen["drop"].count(True) >= 2 * 20 * 4 * 2
    after = _buffers(model)
    assert before.keys() == after.keys() and any("running_mean" in k for k in before)
    for k in before:
        assert _bitwise_equal(before[k], after[k]), k
    assert set(result.switched) == {"blocks.0.dropout", "blocks.1.dropout"}
    assert float(result.mutual_information.mean()) > 0  # the passes really differ


def test_mc_accuracy_approaches_weight_scaling_as_T_grows(trained):
    model, splits = trained
    x, y = splits.x_test, splits.y_test
    rows = mc_vs_weight_scaling(model, x, y, T_values=(1, 10, 100), seeds=(0, 1, 2))
    by_t = {r["T"]: r for r in rows}
    ws = rows[0]["ws_acc"]
    assert ws == pytest.approx(float((predict(model, x).argmax(1) == y).float().mean()))
    gap1, gap100 = abs(by_t[1]["acc"] - ws), abs(by_t[100]["acc"] - ws)
    # One sub-network (T=1) is clearly worse than the average; T=100 nearly closes the gap.
    assert by_t[1]["acc"] < ws and gap100 < gap1
    assert by_t[100]["nll"] < by_t[10]["nll"] < by_t[1]["nll"]
    assert by_t[100]["acc_lo"] <= by_t[100]["acc"] <= by_t[100]["acc_hi"]
    # Paired test (McNemar, exact binomial) of MC(T=100) against weight scaling on the same
    # 1000 test examples: under equal accuracy, the examples that exactly one of the two gets
    # right split 50/50. Not rejected at the 0.1% level, and the absolute gap is under 2 points
    # (the paper: within one standard deviation beyond T = 50).
    mc = mc_predict(model, x, samples=100, seed=0).predictions()
    wsp = predict(model, x).argmax(1)
    b = int(((mc == y) & (wsp != y)).sum())
    c = int(((mc != y) & (wsp == y)).sum())
    assert binomtest(b, b + c, 0.5).pvalue > 1e-3
    assert abs(b - c) / len(y) < 0.02


# --------------------------------------------------------------------------------------------
# mc_mode
# --------------------------------------------------------------------------------------------


class _Zoo(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.bn = nn.BatchNorm1d(6, momentum=None)  # cumulative average: updates every batch
        self.drop = nn.Dropout(0.3)
        self.ddrop = dn.Dropout(0.3)
        self.alpha = nn.AlphaDropout(0.1)
        self.gru = nn.GRU(6, 6, num_layers=2, dropout=0.2, batch_first=True)
        self.gru1 = nn.GRU(6, 6, batch_first=True)  # no dropout: stays in eval
        self.rrelu = nn.RReLU()  # stochastic activation, not dropout: stays in eval
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        h = self.ddrop(self.drop(self.rrelu(self.bn(self.fc(x)))))
        h = self.alpha(h)
        h, _ = self.gru(h.unsqueeze(1))
        h, _ = self.gru1(h)
        return self.head(h.squeeze(1))


def test_mc_mode_switches_only_the_dropout_family_and_restores_mixed_modes():
    model = _Zoo()
    model.eval()
    model.bn.train()  # a mixed starting state must come back exactly
    model.head.train()
    before = {n: m.training for n, m in model.named_modules()}
    with mc_mode(model) as switched:
        flags = {n: m.training for n, m in model.named_modules()}
        model(torch.randn(5, 6))
    assert set(switched) == {"drop", "ddrop", "alpha", "gru"}
    assert {n for n, on in flags.items() if on} == set(switched)
    assert {n: m.training for n, m in model.named_modules()} == before


def test_mc_mode_restores_modes_when_the_body_raises():
    model = _Zoo().train()
    with pytest.raises(RuntimeError, match="boom"):
        with mc_mode(model):
            assert not model.bn.training
            raise RuntimeError("boom")
    assert all(m.training for m in model.modules())


def test_mc_mode_include_by_name_and_object_and_its_errors():
    model = _Zoo().eval()
    with mc_mode(model, include=["fc", model.head]) as switched:
        assert model.fc.training and model.head.training and not model.bn.training
    assert {"fc", "head"} <= set(switched)
    with pytest.raises(ConfigError, match="no submodule 'hed' of the model \\(did you mean 'head'\\?\\)"):
        with mc_mode(model, include=["hed"]):
            pass
    with pytest.raises(ConfigError, match="normalization layer with running statistics"):
        with mc_mode(model, include=["bn"]):
            pass
    with pytest.raises(ConfigError, match="not a submodule of the model"):
        with mc_mode(model, include=[nn.Linear(2, 2)]):
            pass
    with pytest.raises(ConfigError, match="model must be a torch.nn.Module, got str"):
        with mc_mode("net"):
            pass
    assert not any(m.training for m in model.modules())


def test_transformer_layer_fast_path_does_not_skip_dropout():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.3, batch_first=True)
    model = nn.Sequential(layer, nn.Flatten(), nn.Linear(32, 3)).eval()
    x = torch.randn(6, 4, 8)
    result = mc_predict(model, x, samples=10, seed=0)
    assert "0" in result.switched
    assert float(result.variance.max()) > 0


# --------------------------------------------------------------------------------------------
# Functional dropout guarded by self.training
# --------------------------------------------------------------------------------------------


class _Guarded(nn.Module):
    """forward calls F.dropout(x, self.p, self.training) next to a BatchNorm child."""

    def __init__(self, p=0.5):
        super().__init__()
        self.fc, self.bn, self.head, self.p = nn.Linear(5, 16), nn.BatchNorm1d(16), nn.Linear(16, 3), p

    def forward(self, x):
        return self.head(F.dropout(torch.relu(self.bn(self.fc(x))), self.p, self.training))


def test_functional_dropout_guarded_by_training_is_detected_and_bn_untouched():
    torch.manual_seed(0)
    model = _Guarded()
    model.train()
    model(torch.randn(32, 5))  # non-trivial running statistics
    model.eval()
    before = _buffers(model)
    x = torch.randn(20, 5)
    result = mc_predict(model, x, samples=30, seed=0)
    assert result.switched == ("<root>",)
    assert float(result.variance.max()) > 0
    assert not model.bn.training and not model.training
    for k, v in _buffers(model).items():
        assert _bitwise_equal(before[k], v), k
    # Without the probe the functional dropout stays off: every pass is the eval pass.
    off = mc_predict(model, x, samples=5, seed=0, detect=False)
    assert float(off.variance.max()) == 0.0
    assert torch.allclose(off.mean, torch.softmax(predict(model, x), 1), atol=1e-6)
    # Naming the module has the same effect as detecting it.
    named = mc_predict(model, x, samples=30, seed=0, detect=False, include=["<root>"])
    assert torch.equal(named.mean, result.mean)


class _Counting(nn.Module):
    """Guarded functional dropout in a module whose training mode also updates a buffer."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        if self.training:
            self.calls += 1
        return self.fc(F.dropout(x, 0.5, self.training))


def test_guarded_module_whose_training_mode_changes_buffers_is_refused():
    model = _Counting().eval()
    with pytest.warns(DroplabWarning) as record:
        result = mc_predict(model, torch.randn(8, 4), samples=4, seed=0)
    messages = [str(w.message) for w in record]
    assert any("'<root>' stays off" in m and "changes buffers (calls)" in m for m in messages)
    assert any("nothing stochastic it could switch on" in m for m in messages)
    assert int(model.calls) == 0 and result.switched == ()
    assert float(result.variance.max()) == 0.0


def test_deterministic_model_warns_and_gives_zero_uncertainty():
    model = nn.Linear(4, 3)
    x = torch.randn(20, 4)
    with pytest.warns(DroplabWarning, match="nothing stochastic it could switch on"):
        result = mc_predict(model, x, samples=3, batch_size=7)
    assert torch.allclose(result.probs, torch.softmax(model(x), 1).detach(), atol=1e-6)
    assert float(result.variance.abs().max()) == 0.0
    assert float(result.mutual_information.abs().max()) < 1e-6
    assert torch.allclose(result.predictive_entropy, result.expected_entropy, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Seeds and generators
# --------------------------------------------------------------------------------------------


def _small_net(generator=None):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 32), nn.ReLU(), dn.Dropout(0.5, generator=generator), nn.Linear(32, 4)
    ).eval()


def test_seed_is_reproducible_and_leaves_the_global_rng_alone():
    model = _small_net()
    x = torch.randn(30, 6)
    state = torch.get_rng_state()
    a = mc_predict(model, x, samples=15, seed=3, batch_size=8)
    assert torch.equal(torch.get_rng_state(), state)
    b = mc_predict(model, x, samples=15, seed=3, batch_size=8)
    c = mc_predict(model, x, samples=15, seed=4, batch_size=8)
    for name in ("mean", "variance", "predictive_entropy", "expected_entropy", "mutual_information"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.mean, c.mean)
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(
        mc_predict(model, x, 5, generator=g1).mean, mc_predict(model, x, 5, generator=g2).mean
    )


def test_layers_with_their_own_generator_follow_the_seed_and_keep_their_state():
    own = torch.Generator().manual_seed(123)
    model = _small_net(own)
    x = torch.randn(10, 6)
    state = own.get_state()
    a = mc_predict(model, x, samples=8, seed=1)
    assert torch.equal(own.get_state(), state) and model[2].generator is own
    assert torch.equal(a.mean, mc_predict(model, x, samples=8, seed=1).mean)
    mc_predict(model, x, samples=8)  # unseeded: draws from the layer's generator as usual
    assert not torch.equal(own.get_state(), state)


# --------------------------------------------------------------------------------------------
# The estimates against exact enumeration of every mask
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_moments_match_exact_enumeration(seed):
    """Dropout(0.5) on 3 inputs of a fixed linear classifier: 8 equally likely masks.

    The MC mean probability, expected entropy and variance are means of T i.i.d. draws, so
    each lies within 4 standard errors of its exact value (SE from the exact moments);
    4 sigma, 3 seeds and 2 x (2 + 1 + 2) checks: a false alarm has probability < 1e-3.
    """
    p, T = 0.5, 4000
    lin = nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [-1.0, 1.5, 2.0]]))
        lin.bias.copy_(torch.tensor([0.2, -0.1]))
    model = nn.Sequential(nn.Dropout(p), lin).eval()
    x = torch.tensor([[1.0, 0.5, -1.0], [0.3, -0.7, 0.9]])
    result = mc_predict(model, x, samples=T, seed=seed)
    masks = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)))
    with torch.no_grad():
        probs = torch.stack([torch.softmax(lin(x * m / (1 - p)), 1) for m in masks]).double()
    ent = -(probs * probs.log()).sum(-1)
    mean, var = probs.mean(0), probs.var(0, unbiased=False)
    mu4 = ((probs - mean) ** 4).mean(0)
    k = 4.0
    assert ((result.mean.double() - mean).abs() <= k * (var / T).sqrt()).all()
    assert ((result.expected_entropy.double() - ent.mean(0)).abs() <= k * (ent.var(0, unbiased=False) / T).sqrt()).all()
    assert ((result.variance.double() - var).abs() <= k * ((mu4 - var**2) / T).sqrt() + 1e-9).all()
    # MI is the exact difference of the two entropies (clamped at 0 against rounding).
    assert torch.allclose(
        result.mutual_information, (result.predictive_entropy - result.expected_entropy).clamp_min(0), atol=1e-6
    )
    assert float(result.mutual_information.min()) > 0


@pytest.mark.parametrize("seed", [0, 1])
def test_regression_mean_and_variance_of_inverted_dropout(seed):
    """y = Dropout(p)(c): mean c, variance c^2 p / (1 - p); pooled over 64 outputs."""
    p, T, c = 0.2, 500, 2.0
    model = dn.Dropout(p).eval()
    x = torch.full((16, 4), c)
    result = mc_predict(model, x, samples=T, seed=seed, task="regression")
    assert result.predictive_entropy is None and result.mutual_information is None
    assert result.mean.shape == x.shape and result.variance.shape == x.shape
    q = 1 - p  # keep probability; y = a * B with B ~ Bernoulli(q), a = c / q
    a = c / q
    var = a**2 * q * (1 - q)
    mu4 = a**4 * q * (1 - q) * (1 - 3 * q + 3 * q**2)
    m = x.numel()
    assert abs(float(result.mean.double().mean()) - c) <= 4 * math.sqrt(var / T / m)
    assert abs(float(result.variance.double().mean()) - var) <= 4 * math.sqrt((mu4 - var**2) / T / m)
    assert result.predictions() is result.mean
    with pytest.raises(ConfigError, match="probs exist for task='classification' only"):
        result.probs


# --------------------------------------------------------------------------------------------
# Errors and the top-level exports
# --------------------------------------------------------------------------------------------


def test_errors():
    model = _small_net()
    x = torch.randn(4, 6)
    with pytest.raises(ConfigError, match="samples must be a positive integer, got 0"):
        mc_predict(model, x, samples=0)
    with pytest.raises(ConfigError, match="task must be one of .*did you mean 'classification'"):
        mc_predict(model, x, task="clasification")
    with pytest.raises(DataError, match="inputs must be a tensor of shape \\(N, ...\\), got list"):
        mc_predict(model, [[0.0] * 6])
    with pytest.raises(DataError, match="at least one example, got shape \\(0, 6\\)"):
        mc_predict(model, torch.zeros(0, 6))
    with pytest.raises(ConfigError, match="give seed or generator, not both"):
        mc_predict(model, x, seed=1, generator=torch.Generator())
    with pytest.raises(ConfigError, match="seed must be a non-negative integer, got -1"):
        mc_predict(model, x, seed=-1)
    with pytest.raises(DataError, match="got tuple"):
        mc_predict(nn.GRU(6, 4, batch_first=True), x.unsqueeze(1), detect=False)
    with pytest.raises(DataError, match="logits of shape \\(N, C\\), got shape \\(4, 1, 4\\)"):
        mc_predict(nn.Linear(6, 4), x.unsqueeze(1), detect=False)
    with pytest.raises(DataError, match="labels must be an integer tensor of shape \\(N,\\)"):
        mc_vs_weight_scaling(model, x, torch.zeros(4))
    with pytest.raises(DataError, match="one entry per input \\(4\\), got 3"):
        mc_vs_weight_scaling(model, x, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ConfigError, match="T_values must be a non-empty list"):
        mc_vs_weight_scaling(model, x, torch.zeros(4, dtype=torch.long), T_values=())
    with pytest.raises(ConfigError, match="T_values entries must be a positive integer, got 0"):
        mc_vs_weight_scaling(model, x, torch.zeros(4, dtype=torch.long), T_values=(0, 5))


def test_single_seed_has_no_interval_and_top_level_exports():
    model = _small_net()
    rows = mc_vs_weight_scaling(model, torch.randn(12, 6), torch.zeros(12, dtype=torch.long), T_values=(3, 1), seeds=(5,))
    assert [r["T"] for r in rows] == [1, 3]
    assert all(math.isnan(r["acc_lo"]) and r["n_seeds"] == 1 for r in rows)
    assert droplab.mc_predict is mc_predict and droplab.mc_mode is mc_mode
    assert isinstance(mc_predict(model, torch.randn(3, 6), 2, seed=0), MCResult)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a model with dropout raises no warning
        mc_predict(model, torch.randn(3, 6), 2, seed=0)


# --------------------------------------------------------------------------------------------
# CUDA (skipped without a GPU)
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_mc_predict_on_cuda_is_seeded_and_matches_the_cpu_model():
    def model(device):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Linear(6, 32), nn.ReLU(), dn.Dropout(0.5, generator=torch.Generator().manual_seed(1)),
            nn.Linear(32, 3),
        ).to(device)

    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(2))
    gpu, cpu = model("cuda").eval(), model("cpu").eval()
    a = mc_predict(gpu, x.cuda(), samples=20, seed=3)
    b = mc_predict(gpu, x.cuda(), samples=20, seed=3)
    assert a.mean.device.type == "cpu"  # results come back to the CPU (MCResult's docstring)
    assert torch.equal(a.mean, b.mean)
    assert torch.equal(a.mutual_information, b.mutual_information)
    # The layer's generator lives on the CPU, so the GPU model sees the CPU model's masks.
    c = mc_predict(cpu, x, samples=20, seed=3)
    torch.testing.assert_close(a.mean, c.mean, rtol=1e-4, atol=1e-5)
    assert not any(m.training for m in gpu.modules())  # eval mode restored after the passes
