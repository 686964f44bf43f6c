"""Calibration metrics and temperature scaling."""

import math

import pytest
import torch
from torch import nn

from droplab.errors import ConfigError, DataError
from droplab.inference import (
    CalibrationReport,
    brier,
    calibration_metrics,
    calibration_report,
    ece,
    fit_temperature,
    nll,
    reliability_bins,
)


def test_hand_computed_examples():
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.5, 0.5]])
    labels = torch.tensor([0, 1, 1, 0])
    # 2 bins (0, .5] and (.5, 1]: confidences 0.9, 0.6, 0.7 | 0.5 (boundary goes low).
    bins = reliability_bins(probs, labels, n_bins=2)
    assert [b["count"] for b in bins] == [1, 3]
    assert bins[0]["confidence"] == pytest.approx(0.5) and bins[0]["accuracy"] == 1.0
    assert bins[1]["confidence"] == pytest.approx(2.2 / 3) and bins[1]["accuracy"] == pytest.approx(2 / 3)
    assert ece(probs, labels, n_bins=2) == pytest.approx(0.25 * 0.5 + 0.75 * abs(2 / 3 - 2.2 / 3))
    assert nll(probs, labels) == pytest.approx(-(math.log(0.9) + math.log(0.4) + math.log(0.7) + math.log(0.5)) / 4)
    expected_brier = (0.01 + 0.01) + (0.36 + 0.36) + (0.09 + 0.09) + (0.25 + 0.25)
    assert brier(probs, labels) == pytest.approx(expected_brier / 4)
    assert calibration_metrics(probs, labels, 2) == {
        "acc": 0.75, "ece": ece(probs, labels, 2), "nll": nll(probs, labels), "brier": brier(probs, labels),
    }


def test_edge_cases():
    one_hot_right = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    labels = torch.tensor([0, 2])
    assert ece(one_hot_right, labels) == 0.0 and brier(one_hot_right, labels) == 0.0
    assert nll(one_hot_right, labels) == 0.0
    # A zero probability on the true class costs -log(smallest float64), not inf.
    assert nll(one_hot_right, torch.tensor([1, 2])) == pytest.approx(-math.log(torch.finfo(torch.float64).tiny) / 2)
    assert brier(one_hot_right, torch.tensor([1, 2])) == 1.0  # (1 + 1) / 2
    # Confidence exactly 1 falls in the last bin; empty bins report nan.
    bins = reliability_bins(one_hot_right, labels, n_bins=4)
    assert [b["count"] for b in bins] == [0, 0, 0, 2] and math.isnan(bins[0]["accuracy"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_perfectly_calibrated_predictions_have_ece_near_zero(seed):
    """Labels drawn from the predicted probabilities: each bin's accuracy is a binomial mean
    around its mean confidence, so |acc_b - conf_b| <= 4 sqrt(conf_b (1 - conf_b) / n_b) per bin
    with overwhelming probability, and ECE is below the count-weighted sum of those bounds."""
    g = torch.Generator().manual_seed(seed)
    n = 20000
    probs = torch.softmax(2.0 * torch.randn(n, 4, generator=g), dim=1)
    labels = torch.multinomial(probs, 1, generator=g).squeeze(1)
    bins = [b for b in reliability_bins(probs, labels) if b["count"]]
    bound = sum(b["count"] / n * 4 * math.sqrt(b["confidence"] * (1 - b["confidence"]) / b["count"]) for b in bins)
    value = ece(probs, labels)
    assert value <= bound and bound < 0.05
    # Over-confident predictions of the same labels: ECE close to the true gap.
    sharp = torch.softmax(4.0 * torch.log(probs), dim=1)
    assert ece(sharp, labels) > 5 * bound


def _fisher_se(logits, labels, t):
    """Standard error of the temperature MLE: 1 / sqrt(N * d2/dT2 mean NLL) at t."""
    z = logits.double()
    tt = torch.tensor(float(t), dtype=torch.float64, requires_grad=True)
    loss = nn.functional.cross_entropy(z / tt, labels)
    (g,) = torch.autograd.grad(loss, tt, create_graph=True)
    (h,) = torch.autograd.grad(g, tt)
    return 1.0 / math.sqrt(len(labels) * float(h))


@pytest.mark.parametrize(("t_true", "seed"), [(2.0, 0), (0.5, 1), (1.0, 2), (3.0, 3)])
def test_temperature_recovers_a_known_temperature(t_true, seed):
    """Labels ~ softmax(z / T): the NLL minimizer is the MLE of T; within 4 Fisher SEs."""
    g = torch.Generator().manual_seed(seed)
    z = 3.0 * torch.randn(10000, 5, generator=g)
    labels = torch.multinomial(torch.softmax(z / t_true, dim=1), 1, generator=g).squeeze(1)
    t_hat = fit_temperature(z, labels)
    assert abs(t_hat - t_true) <= 4 * _fisher_se(z, labels, t_hat)


def test_calibration_report_on_an_overconfident_model():
    g = torch.Generator().manual_seed(0)
    true = nn.Linear(6, 4)
    with torch.no_grad():
        true.weight.copy_(torch.randn(4, 6, generator=g))
        true.bias.zero_()

    def split(n):
        x = torch.randn(n, 6, generator=g)
        with torch.no_grad():
            y = torch.multinomial(torch.softmax(true(x), 1), 1, generator=g).squeeze(1)
        return x, y

    x_val, y_val = split(8000)
    x_test, y_test = split(8000)
    model = nn.Linear(6, 4)
    with torch.no_grad():  # the right direction, three times too sharp
        model.weight.copy_(3 * true.weight)
        model.bias.zero_()
    report = calibration_report(model, x_val, y_val, x_test, y_test)
    assert isinstance(report, CalibrationReport)
    assert report.temperature == pytest.approx(3.0, rel=0.1)
    assert report.after["acc"] == report.before["acc"]
    assert report.after["ece"] < report.before["ece"] / 2
    assert report.after["nll"] < report.before["nll"] and report.after["brier"] < report.before["brier"]
    flat = report.flat()
    assert set(flat) == {"acc", "ece", "nll", "brier", "temperature", "ece_ts", "nll_ts", "brier_ts"}
    assert flat["ece_ts"] == report.after["ece"]


def test_errors():
    probs, labels = torch.tensor([[0.7, 0.3]]), torch.tensor([0])
    with pytest.raises(DataError, match="rows summing to \\[3, 3\\]; pass softmax\\(logits\\)"):
        ece(torch.tensor([[2.0, 1.0]]), labels)
    with pytest.raises(DataError, match="probs must be a floating-point tensor of shape \\(N, C\\), got shape \\(2,\\)"):
        nll(torch.tensor([0.7, 0.3]), labels)
    with pytest.raises(DataError, match="same length, got 1 and 2"):
        brier(probs, torch.tensor([0, 1]))
    with pytest.raises(DataError, match="labels must be in \\[0, 2\\), got labels in \\[2, 2\\]"):
        nll(probs, torch.tensor([2]))
    with pytest.raises(DataError, match="labels must be an integer tensor of shape \\(N,\\)"):
        nll(probs, torch.tensor([0.0]))
    with pytest.raises(ConfigError, match="n_bins must be a positive integer, got 0"):
        ece(probs, labels, n_bins=0)
    with pytest.raises(DataError, match="logits must be finite"):
        fit_temperature(torch.tensor([[float("nan"), 0.0]]), labels)
    with pytest.raises(DataError, match="logits must be a floating-point tensor of shape \\(N, C\\)"):
        fit_temperature(torch.tensor([1.0, 2.0]), labels)
