"""Input-noise robustness: corruptions and accuracy under noise."""

import math

import pytest
import torch
from scipy.stats import binomtest
from torch import nn

from droplab.errors import ConfigError, DataError
from droplab.inference import NOISE_KINDS, accuracy_under_noise, corrupt_inputs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gaussian_noise_has_the_requested_std_and_nests_across_levels(seed):
    x = torch.full((200, 50), 3.0)
    noise = corrupt_inputs(x, 0.5, generator=torch.Generator().manual_seed(seed)) - x
    n = noise.numel()
    # Sample mean within 4 SE of 0; sample variance within 4 SE of 0.25 (SE = s^2 sqrt(2/n)).
    assert abs(float(noise.mean())) <= 4 * 0.5 / math.sqrt(n)
    assert abs(float(noise.var()) - 0.25) <= 4 * 0.25 * math.sqrt(2 / n)
    double = corrupt_inputs(x, 1.0, generator=torch.Generator().manual_seed(seed)) - x
    assert torch.allclose(double, 2 * noise, atol=1e-5)  # same draw, scaled
    assert corrupt_inputs(x, 0.0) is x


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_zeroes_the_requested_fraction_and_nests(seed):
    x = torch.ones(100, 40)
    m3 = corrupt_inputs(x, 0.3, kind="mask", generator=torch.Generator().manual_seed(seed))
    m6 = corrupt_inputs(x, 0.6, kind="mask", generator=torch.Generator().manual_seed(seed))
    zeros = int((m3 == 0).sum())
    assert binomtest(zeros, x.numel(), 0.3).pvalue > 1e-3
    assert bool(((m3 == 0) <= (m6 == 0)).all())  # dropped at 0.3 => dropped at 0.6
    assert float(corrupt_inputs(x, 1.0, kind="mask").abs().max()) == 0.0


def _separable(seed, n=600):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centers = 4.0 * torch.eye(3, 5)
    x = centers[y] + 0.5 * torch.randn(n, 5, generator=g)
    model = nn.Linear(5, 3)
    with torch.no_grad():
        model.weight.copy_(centers)
        model.bias.zero_()
    return model, x, y


def test_accuracy_falls_with_noise_and_matches_the_clean_model_at_level_0():
    model, x, y = _separable(0)
    rows = accuracy_under_noise(model, x, y, levels=(0.0, 1.0, 4.0, 16.0), seed=0)
    assert [r["level"] for r in rows] == [0.0, 1.0, 4.0, 16.0]
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    assert rows[0]["acc"] == clean > 0.95
    # At noise std 16 against class separation 4 * sqrt(2) the predictions are near chance;
    # the drop from > 0.95 is far beyond the binomial SE of 600 examples (about 0.02).
    assert rows[3]["acc"] < rows[1]["acc"] < rows[0]["acc"] and rows[3]["acc"] < 0.6
    assert rows[3]["nll"] > rows[0]["nll"]
    assert rows == accuracy_under_noise(model, x, y, levels=(0.0, 1.0, 4.0, 16.0), seed=0)


def test_full_mask_predicts_one_class_everywhere():
    model, x, y = _separable(1)
    with torch.no_grad():
        model.bias.copy_(torch.tensor([0.0, 1.0, 0.0]))  # all-zero input -> class 1
    (row,) = accuracy_under_noise(model, x, y, levels=(1.0,), kind="mask")
    assert row["acc"] == pytest.approx(float((y == 1).float().mean()))


def test_models_evaluated_with_one_seed_see_the_same_corrupted_inputs():
    seen = []

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(5, 3)

        def forward(self, x):
            seen.append(x.clone())
            return self.fc(x)

    _, x, y = _separable(2)
    accuracy_under_noise(Recorder(), x, y, levels=(0.5,), seed=7)
    accuracy_under_noise(Recorder(), x, y, levels=(0.5,), seed=7)
    accuracy_under_noise(Recorder(), x, y, levels=(0.5,), seed=8)
    assert torch.equal(seen[0], seen[1]) and not torch.equal(seen[0], seen[2])


def test_regression_rmse_equals_the_noise_std():
    """Identity model: the error is the noise itself; RMSE within 4 SE of the std."""
    x = torch.zeros(500, 4)
    rows = accuracy_under_noise(nn.Identity(), x, x.clone(), levels=(0.0, 0.5), seed=3)
    n = x.numel()
    assert rows[0]["rmse"] == 0.0
    # var(sample variance) = 2 s^4 / n -> SE of the RMSE about s / sqrt(2 n)
    assert abs(rows[1]["rmse"] - 0.5) <= 4 * 0.5 / math.sqrt(2 * n)
    assert "acc" not in rows[1]


def test_errors():
    model, x, y = _separable(0, n=10)
    assert NOISE_KINDS == ("gaussian", "mask")
    with pytest.raises(ConfigError, match="kind must be one of 'gaussian', 'mask'; got 'gausian' \\(did you mean 'gaussian'\\?\\)"):
        accuracy_under_noise(model, x, y, kind="gausian")
    with pytest.raises(ConfigError, match="level must be in \\[0, 1\\], got 1.5"):
        corrupt_inputs(x, 1.5, kind="mask")
    with pytest.raises(ConfigError, match="level must be a finite number >= 0, got -0.1"):
        accuracy_under_noise(model, x, y, levels=(0.0, -0.1))
    with pytest.raises(ConfigError, match="levels must be a non-empty list of numbers, got \\(\\)"):
        accuracy_under_noise(model, x, y, levels=())
    with pytest.raises(DataError, match="one entry per input \\(10\\), got \\(9,\\)"):
        accuracy_under_noise(model, x, y[:9])
    with pytest.raises(DataError, match="x must be a floating-point tensor"):
        corrupt_inputs(torch.ones(3, dtype=torch.long), 0.1)
