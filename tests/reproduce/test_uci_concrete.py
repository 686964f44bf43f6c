"""Concrete dropout on the UCI benchmark: the batched relaxed masks, the regularizer, learned rates,
determinism, the JSON and page, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from droplab.cli import main
from droplab.data.uci import load_uci
from droplab.errors import ConfigError
from droplab.functional import concrete_dropout
from droplab.functional.concrete import batched_concrete_dropout, concrete_regularization
from droplab.functional.random import rand
from droplab.nn import ConcreteDropout
from droplab.reproduce import uci as U
from droplab.reproduce import uci_concrete as C

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "uci"
needs_shared = pytest.mark.skipif(
    not (SHARED / "yacht" / "data.txt").is_file(),
    reason=f"the UCI data are not at {SHARED} (the project's shared data folder)",
)
# --quick sizes, cut further so that a test stays within seconds on 2 cores
TINY = U.UCIProtocol.quick(epoch_multiplier=0.5, splits=2, test_passes=50)
JSON_FIELDS = {"dataset", "method", "rmse", "rmse_se", "ll", "ll_se", "published", "agrees_rmse",
               "agrees_ll", "splits", "seconds", "per_split"}


def test_batched_equals_the_single_form_per_member():
    x = torch.randn(3, 4, 7, generator=torch.Generator().manual_seed(0))
    logit = torch.tensor([-2.0, 0.0, 1.5])
    u = torch.stack([rand((4, 7), torch.Generator().manual_seed(10 + k), "cpu") for k in range(3)])
    out = batched_concrete_dropout(x, logit, u)
    for k in range(3):
        one = concrete_dropout(x[k], logit[k], generator=torch.Generator().manual_seed(10 + k))
        torch.testing.assert_close(out[k], one, rtol=1e-6, atol=1e-6)


def test_batched_gradient_reaches_each_members_logit():
    logit = torch.zeros(2, requires_grad=True)
    batched_concrete_dropout(torch.ones(2, 8, 3), logit, torch.rand(2, 8, 3)).sum().backward()
    assert logit.grad is not None and bool((logit.grad != 0).all())


@pytest.mark.parametrize(
    "logit, u, message",
    [
        (torch.zeros(2, 1), torch.rand(2, 4), r"p_logit must have shape \(K,\)"),
        (torch.zeros(3), torch.rand(2, 4), r"p_logit must have shape \(K,\)"),
        (torch.zeros(2), torch.rand(2, 5), "u must have the inputs' shape"),
    ],
)
def test_batched_errors(logit, u, message):
    with pytest.raises(ConfigError, match=message):
        batched_concrete_dropout(torch.ones(2, 4), logit, u)


def test_regularization_hand_value_and_the_layer_uses_it():
    # p = 0.5: wr * 3 / 0.5 + dr * 4 * (2 * 0.5 log 0.5)
    got = concrete_regularization(torch.tensor(0.0), torch.tensor(3.0), 4, 0.1, 0.2)
    assert float(got) == pytest.approx(0.6 + 0.2 * 4 * math.log(0.5), rel=1e-6)
    layer, dense = ConcreteDropout(0.3, weight_regularizer=0.01, dropout_regularizer=0.02), torch.nn.Linear(5, 2)
    sum_sq = sum(t.pow(2).sum() for t in dense.parameters())
    expected = concrete_regularization(layer.p_logit, sum_sq, 5, 0.01, 0.02)
    assert layer.regularization(dense, input_dim=5).item() == expected.item()
    with pytest.raises(ValueError, match="input_dim must be a positive integer"):
        concrete_regularization(torch.tensor(0.0), torch.tensor(1.0), 0, 0.1, 0.1)


def test_mc_metrics_one_pass_without_noise_is_a_gaussian():
    # one member, one point: mean 1, log-variance 0 in standardized units; std_y 2, mean_y 3
    params = {"W0": torch.zeros(1, 1, 2), "b0": torch.zeros(1, 1, 2), "W1": torch.zeros(1, 2, 2),
              "b1": torch.tensor([[[1.0, 0.0]]]), "p_logit": torch.full((1, 2), -30.0)}
    y = torch.tensor([[4.0]], dtype=torch.float64)
    m = C.concrete_mc_metrics(params, torch.zeros(1, 1, 1), y, torch.tensor([3.0], dtype=torch.float64),
                              torch.tensor([2.0], dtype=torch.float64), passes=3, seed=0)
    # prediction 1 * 2 + 3 = 5, variance 4: log N(4; 5, 4)
    assert float(m["rmse"][0]) == pytest.approx(1.0) and float(m["rmse_deterministic"][0]) == pytest.approx(1.0)
    assert float(m["ll"][0]) == pytest.approx(-0.5 * (math.log(2 * math.pi * 4) + 1 / 4), rel=1e-9)


@needs_shared
def test_yacht_learns_rates_deterministically_json_and_page(tmp_path):
    data = load_uci("yacht", SHARED)
    r = U.run_uci(data, "concrete_dropout", protocol=TINY)
    assert [row["split"] for row in r.per_split] == [0, 1]
    for row in r.per_split:
        assert len(row["rate"]) == 2 and row["tau"] is None
        assert all(0.0 < p < 1.0 and abs(p - 0.1) > 1e-3 for p in row["rate"])  # moved from 0.1
        assert math.isfinite(row["rmse"]) and math.isfinite(row["ll"])
    assert U.run_uci(data, "concrete_dropout", protocol=TINY).per_split == r.per_split  # bit for bit
    d = r.to_dict()
    assert JSON_FIELDS <= set(d) and d["method"] == "concrete_dropout" and d["published"] is None
    assert d["agrees_rmse"] is None and d["splits"] == 2
    html, js = U.write_results([r], tmp_path / "c.html")
    assert "concrete_dropout" in html.read_text()
    assert json.loads(js.read_text())["results"][0]["per_split"][0]["rate"] == r.per_split[0]["rate"]
    U.uci_table([r])


@needs_shared
def test_cli_accepts_concrete_dropout(tmp_path, capsys):
    code = main(["reproduce", "uci", "--data-dir", str(SHARED), "--datasets", "yacht", "--quick",
                 "--methods", "concrete_dropout", "--splits", "2", "--epoch-multiplier", "0.25", "--json",
                 "--quiet", "--jobs", "1", "-o", str(tmp_path / "u.html")])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(x["dataset"], x["method"]) for x in lines] == [("yacht", "concrete_dropout")]
    assert JSON_FIELDS <= set(lines[0]) and len(lines[0]["per_split"][0]["rate"]) == 2
