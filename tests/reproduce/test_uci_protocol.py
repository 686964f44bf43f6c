"""The UCI protocol: the LL formula, the Keras L2, grouped populations, batched MC passes, the CLI."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from droplab.cli import main
from droplab.data.uci import load_uci
from droplab.errors import ConfigError
from droplab.models import ModelSpec
from droplab.reproduce import uci as U
from droplab.sweep.population import Member, MLPNet, Population
from droplab.train import TrainConfig

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "uci"
needs_shared = pytest.mark.skipif(
    not (SHARED / "yacht" / "data.txt").is_file(),
    reason=f"the UCI data are not at {SHARED} (the project's shared data folder)",
)
# --quick sizes, cut further so that a test stays within seconds on 2 cores
TINY = U.UCIProtocol.quick(epoch_multiplier=0.25, splits=2, val_passes=20, test_passes=50)


def test_loglik_hand_computed():
    # y = 1, samples 1 and 3, tau = 0.5: terms 0 and -0.5*0.5*4 = -1
    expected = math.log(math.exp(0.0) + math.exp(-1.0)) - math.log(2) - 0.5 * math.log(2 * math.pi) + 0.5 * math.log(0.5)
    got = U.gaussian_mc_loglik(torch.tensor([1.0]), torch.tensor([[1.0], [3.0]]), 0.5)
    assert float(got[0]) == pytest.approx(expected, abs=1e-12)
    # T = 1 is a Gaussian log-density of precision tau
    one = U.gaussian_mc_loglik(torch.tensor([2.0]), torch.tensor([[0.5]]), 4.0)
    assert float(one[0]) == pytest.approx(-2.0 * 1.5**2 - 0.5 * math.log(2 * math.pi) + 0.5 * math.log(4.0))


def test_agreement_rule():
    assert U.agrees(2.9 + 2 * math.sqrt(0.1**2 + 0.2**2) - 1e-9, 0.1, 2.9, 0.2)
    assert not U.agrees(2.9 + 2 * math.sqrt(0.1**2 + 0.2**2) + 1e-9, 0.1, 2.9, 0.2)
    assert not U.agrees(math.nan, 0.1, 2.9, 0.2)


def _members(rates, taus, groups, epochs=2, n=50):
    base = TrainConfig(epochs=epochs, batch_size=16, eval_train=False)
    out = []
    for g in groups:
        for p in rates:
            for tau in taus:
                reg = 1e-4 * (1 - p) / (2 * n * tau)
                out.append(Member(f"{g}-{p}-{tau}", {"group": g, "p": p, "tau": tau}, seed=g,
                                  train=base.replace(l2=reg), rates=(p, p)))
    return out


SPEC = ModelSpec(kind="mlp", hidden=(8,), dropout={"input": 0.0, "hidden": 0.0})


def _grouped_data(groups=2, n=50, d=3):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(groups, n, d, generator=g)
    y = x.sum(2) + 0.1 * torch.randn(groups, n, generator=g)
    return x, y


def test_grouped_population_matches_members_trained_alone_with_keras_l2():
    x, y = _grouped_data()
    members = _members([0.0, 0.2], [0.5, 2.0], [0, 1])
    empty = x[:, :0]
    pop = Population(MLPNet(SPEC, (3,), 1, members), members, (x, y, empty, y[:, :0]), "regression",
                     groups=[m.params["group"] for m in members], history=False)
    assert len(pop.runs) == 1, "one optimizer for members that differ only in L2"
    while not pop.done:
        pop.run_epoch()
    assert pop.history == [[] for _ in members]
    for i in (1, len(members) - 2):  # a dropout member of each group, each with its own L2
        m = members[i]
        g = m.params["group"]
        alone = Population(MLPNet(SPEC, (3,), 1, [m]), [m], (x[g], y[g], x[g, :0], y[g, :0]), "regression")
        while not alone.done:
            alone.run_epoch()
        for name in pop.params:
            torch.testing.assert_close(pop.params[name][i], alone.params[name][0], rtol=1e-5, atol=1e-6)


def test_l2_is_keras_l2_on_every_layer():
    """One Adam step of the population equals autograd on mse + reg * sum(W**2) over both layers."""
    x, y = _grouped_data(groups=1, n=16)
    reg = 0.37
    m = Member("a", {"group": 0, "tau": 1.0}, 3, TrainConfig(epochs=1, batch_size=16, l2=reg, eval_train=False),
               rates=(0.0, 0.0))
    pop = Population(MLPNet(SPEC, (3,), 1, [m]), [m], (x, y, x[:, :0], y[:, :0]), "regression", groups=[0])
    W0, b0, W1, b1 = (pop.params[n][0].clone().requires_grad_() for n in ("W0", "b0", "W1", "b1"))
    pop.run_epoch()  # one batch: the whole (shuffled) set, so the order does not matter
    out = torch.relu(x[0] @ W0 + b0) @ W1 + b1
    loss = ((out[:, 0] - y[0]) ** 2).mean() + reg * (W0.pow(2).sum() + W1.pow(2).sum())
    opt = torch.optim.Adam([W0, b0, W1, b1], lr=1e-3)
    loss.backward()
    opt.step()
    for name, ref in (("W0", W0), ("b0", b0), ("W1", W1), ("b1", b1)):
        torch.testing.assert_close(pop.params[name][0], ref.detach(), rtol=1e-5, atol=1e-6)


def _trained(rates=(0.1, 0.5)):
    x, y = _grouped_data()
    members = _members(list(rates), [1.0], [0, 1], epochs=1)
    pop = Population(MLPNet(SPEC, (3,), 1, members), members, (x, y, x[:, :0], y[:, :0]), "regression",
                     groups=[m.params["group"] for m in members], history=False)
    pop.run_epoch()
    return pop, members, x


def test_mc_passes_chunking_does_not_change_the_draws():
    pop, members, x = _trained()
    seeds = [m.seed for m in members]
    xk = x[[m.params["group"] for m in members], :10]
    whole = torch.cat([o for _, o in pop.net.mc_passes(pop.params, xk, 30, seeds)], 1)
    small = [(t0, o) for t0, o in pop.net.mc_passes(pop.params, xk, 30, seeds, budget_bytes=1)]
    assert [t0 for t0, _ in small] == list(range(30)), "a 1-byte budget gives one pass per chunk"
    # the same masks; the products may round differently in a GEMM of another size
    torch.testing.assert_close(whole, torch.cat([o for _, o in small], 1), rtol=1e-5, atol=1e-6)
    assert whole.shape == (len(members), 30, 10, 1)
    again = torch.cat([o for _, o in pop.net.mc_passes(pop.params, xk, 30, seeds)], 1)
    assert torch.equal(whole, again)
    with pytest.raises(ConfigError, match="one seed per member"):
        next(pop.net.mc_passes(pop.params, xk, 3, seeds[:1]))


def test_mc_passes_in_blocks_of_examples_leave_the_inputs_alone(monkeypatch):
    """A pass larger than the budget runs in blocks of examples; the blocks draw the masks a
    whole pass draws (consecutive counters), and the caller's inputs are not written to.
    (The batched-torch passes: the C++ passes hold no activations and chunk only passes.)"""
    monkeypatch.setattr(MLPNet, "_mc_fusable", lambda self, x, P: False)
    pop, members, x = _trained()
    seeds = [m.seed for m in members]
    xk = x[[m.params["group"] for m in members], :10].contiguous()
    before = xk.clone()
    whole = torch.cat([o for _, o in pop.net.mc_passes(pop.params, xk, 4, seeds)], 1)
    per_example = 4 * len(members) * (sum(pop.net.widths) + max(pop.net.widths))
    blocks = [(t0, o) for t0, o in pop.net.mc_passes(pop.params, xk, 4, seeds, budget_bytes=3 * per_example)]
    assert [t0 for t0, _ in blocks] == [0, 1, 2, 3] and blocks[0][1].shape == (len(members), 1, 10, 1)
    torch.testing.assert_close(whole, torch.cat([o for _, o in blocks], 1), rtol=1e-5, atol=1e-6)
    assert torch.equal(xk, before)


def test_mc_passes_drop_units_at_each_members_rate():
    """Input dropout only on a linear probe: the share of dropped inputs matches p per member."""
    spec = ModelSpec(kind="mlp", hidden=(), dropout={"input": 0.0})
    members = [Member(str(p), {}, 0, TrainConfig(epochs=1), rates=(p,)) for p in (0.1, 0.5)]
    net = MLPNet(spec, (200,), 1, members)
    P = {"W0": torch.ones(2, 200, 1), "b0": torch.zeros(2, 1, 1)}
    out = torch.cat([o for _, o in net.mc_passes(P, torch.ones(1, 200), 100, [7, 7])], 1)
    for k, p in enumerate((0.1, 0.5)):
        kept = out[k].flatten() * (1 - p)  # each kept input contributes 1 / (1 - p)
        share = 1 - kept.sum().item() / (200 * 100)
        sd = math.sqrt(p * (1 - p) / 20_000)
        assert abs(share - p) < 5 * sd, (p, share)


def test_mc_metrics_match_a_direct_computation():
    pop, members, x = _trained()
    n_eval = 7
    part = U._Part(x=x, y=x[..., 0], x_eval=x[:, :n_eval], y_eval=torch.randn(2, n_eval, dtype=torch.float64),
                   mean_y=torch.tensor([1.0, -2.0], dtype=torch.float64),
                   std_y=torch.tensor([2.0, 0.5], dtype=torch.float64))
    got = U._mc_metrics(pop, members, part, 40, budget_mb=1)
    seeds = [m.seed for m in members]
    groups = [m.params["group"] for m in members]
    samples = torch.cat([o for _, o in pop.net.mc_passes(pop.params, part.x_eval[groups], 40, seeds)], 1)
    for i, m in enumerate(members):
        g = groups[i]
        yhat = samples[i, :, :, 0].double() * part.std_y[g] + part.mean_y[g]
        ll = U.gaussian_mc_loglik(part.y_eval[g], yhat, m.params["tau"]).mean()
        rmse = (part.y_eval[g] - yhat.mean(0)).pow(2).mean().sqrt()
        assert float(got["ll"][i]) == pytest.approx(float(ll), rel=1e-9)
        assert float(got["rmse"][i]) == pytest.approx(float(rmse), rel=1e-9)


@needs_shared
def test_quick_protocol_on_yacht_and_its_json():
    data = load_uci("yacht", SHARED)
    r = U.run_uci(data, protocol=TINY)
    d = r.to_dict()
    for key in ("dataset", "method", "rmse", "rmse_se", "ll", "ll_se", "published", "agrees_rmse",
                "agrees_ll", "splits", "seconds", "per_split"):
        assert key in d
    assert d["splits"] == 2 and d["published"]["rmse"] == 0.67
    for row in d["per_split"]:
        assert row["rate"] in data.dropout_rates and row["tau"] in data.tau_values
        assert set(row) >= {"split", "rmse", "ll", "rate", "tau"}
        assert math.isfinite(row["rmse"]) and math.isfinite(row["ll"])
    assert r.rmse == pytest.approx(np.mean([row["rmse"] for row in d["per_split"]]))
    # same seed and sizes: the same numbers, bit for bit
    assert U.run_uci(data, protocol=TINY).per_split == r.per_split
    det = U.run_uci(data, "deterministic", protocol=TINY)
    assert det.published is None and all(row["rate"] == 0.0 for row in det.per_split)
    diffs = U.paired_differences([r, det])
    assert diffs[0]["method"] == "deterministic" and diffs[0]["splits"] == 2
    json.loads(U.results_json([r, det]))


@needs_shared
def test_cli_json_and_page(tmp_path, capsys):
    out = tmp_path / "uci.html"
    code = main(["reproduce", "uci", "--data-dir", str(SHARED), "--datasets", "yacht", "--quick",
                 "--splits", "2", "--epoch-multiplier", "0.25", "--json", "--quiet", "-o", str(out)])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(x["dataset"], x["method"]) for x in lines] == [("yacht", "mc_dropout")]
    assert out.is_file() and "yacht" in out.read_text() and (tmp_path / "uci.json").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--datasets", "yachtt"], "unknown UCI data set 'yachtt'"),
        (["--methods", "ensembles"], "method must be one of"),
        (["--splits", "0"], "splits must be a positive integer"),
    ],
)
def test_cli_errors_are_one_line_exit_2(tmp_path, capsys, argv, message):
    code = main(["reproduce", "uci", "--data-dir", str(tmp_path), *argv, "-o", str(tmp_path / "u.html")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1


def test_cli_missing_folder(tmp_path, capsys):
    code = main(["reproduce", "uci", "--data-dir", str(tmp_path / "none"), "--datasets", "yacht"])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_shared_seed_masks_equal_the_fused_counter_kernel():
    """Members sharing a seed hash the draws once; the masks equal counter_dropout's, bit for bit."""
    from droplab.functional.counter import counter_dropout
    from droplab.sweep.population import _derive_seed

    spec = ModelSpec(kind="mlp", hidden=(), dropout={"input": 0.0})
    members = [Member(str(p), {}, 7, TrainConfig(epochs=1), rates=(p,)) for p in (0.1, 0.5)]
    net = MLPNet(spec, (30,), 1, members)
    P = {"W0": torch.randn(2, 30, 1, generator=torch.Generator().manual_seed(1)), "b0": torch.zeros(2, 1, 1)}
    x = torch.randn(4, 30, generator=torch.Generator().manual_seed(2))
    out = torch.cat([o for _, o in net.mc_passes(P, x, 6, [7, 7], budget_bytes=1)], 1)
    stream = torch.tensor([_derive_seed(7, 0xC0DE)] * 2)
    h = counter_dropout(x.expand(2, 6, 4, 30).reshape(2, 24, 30), torch.tensor([0.1, 0.5], dtype=torch.float64), stream)
    assert torch.equal(out.reshape(2, 24, 1), torch.bmm(h, P["W0"]))


def test_result_round_trips_through_json():
    r = U.UCIResult("yacht", "mc_dropout", [
        {"split": 0, "rmse": 0.6, "ll": -1.2, "rmse_deterministic": 0.7, "rate": 0.005, "tau": 0.75, "val_ll": -1.1},
        {"split": 1, "rmse": 0.8, "ll": -1.3, "rmse_deterministic": 0.9, "rate": 0.01, "tau": 0.5, "val_ll": -1.4},
    ], 12.0, U.UCIProtocol())
    back = U.UCIResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back.to_dict() == r.to_dict()
    assert r.rmse == pytest.approx(0.7) and r.rmse_se == pytest.approx(0.1)
    assert r.agreement() == (True, True)
    with pytest.raises(Exception, match="not a UCI result"):
        U.UCIResult.from_dict({"dataset": "yacht"})


@needs_shared
@pytest.mark.slow
def test_jobs_run_in_worker_processes_with_the_same_numbers():
    """Two spawned workers (one thread each) give the numbers of the same runs here, in order."""
    lines = []
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        here = U.run_benchmark(["yacht", "energy"], data_dir=SHARED, protocol=TINY, jobs=1)
    finally:
        torch.set_num_threads(threads)
    there = U.run_benchmark(["yacht", "energy"], data_dir=SHARED, protocol=TINY, jobs=2, progress=lines.append)
    assert [r.dataset for r in there] == ["yacht", "energy"]
    for a, b in zip(here, there):
        assert a.per_split == b.per_split and a.grid == b.grid
    assert any(line.startswith("yacht mc_dropout grid: epoch") for line in lines) and any(line.startswith("energy mc_dropout: RMSE") for line in lines)


def test_jobs_must_be_positive():
    with pytest.raises(ConfigError, match="jobs must be a positive integer, got 0"):
        U.run_benchmark([], jobs=0)


def test_default_jobs_is_one_per_core_at_most_one_per_run():
    assert U.default_jobs(1) == 1
    assert 1 <= U.default_jobs(100) <= 100


def test_gaussian_mixture_metrics_by_hand():
    y = torch.tensor([[0.5, -1.0]])
    mean = torch.tensor([[[0.0, 0.0], [1.0, -2.0]]])  # (S=1, M=2, N=2)
    var = torch.tensor([[[1.0, 4.0], [0.25, 1.0]]])
    rmse, ll = U.gaussian_mixture_metrics(y, mean, var)
    comps = torch.distributions.Normal(mean.double(), var.double().sqrt()).log_prob(y.double().unsqueeze(1))
    expected = torch.log(comps.exp().mean(1)).mean(1)
    assert float(ll[0]) == pytest.approx(float(expected[0]), rel=1e-12)
    assert float(rmse[0]) == pytest.approx(math.sqrt(((0.5 - 0.5) ** 2 + (-1.0 + 1.0) ** 2) / 2), abs=1e-12)
    one_rmse, one_ll = U.gaussian_mixture_metrics(y, mean[:, :1], var[:, :1])  # M = 1: one Gaussian
    assert float(one_ll[0]) == pytest.approx(float(comps[0, 0].mean()), rel=1e-12)


@needs_shared
def test_deep_ensembles_on_yacht_one_population_and_json(tmp_path):
    data = load_uci("yacht", SHARED)
    proto = dataclasses.replace(TINY, ensemble_epochs=10, ensemble_members=3)
    r = U.run_uci(data, "deep_ensembles", protocol=proto)
    assert len(r.per_split) == 2 and all(row["members"] == 3 and row["tau"] is None for row in r.per_split)
    assert all(math.isfinite(row["rmse"]) and math.isfinite(row["ll"]) for row in r.per_split)
    assert r.published["rmse"] == 1.58 and r.agreement() == (None, None)
    d = r.to_dict()
    assert d["agrees_rmse"] is None and d["published"]["rmse_se"] is None
    assert U.run_uci(data, "deep_ensembles", protocol=proto).per_split == r.per_split  # bit for bit
    html, _ = U.write_results([r], tmp_path / "e.html")
    assert "deep_ensembles" in html.read_text()
    U.uci_table([r])  # renders without a standard error
