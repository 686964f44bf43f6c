"""A 1-logit binary model trained with BCE by droplab's Trainer, from data read by as_splits."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from droplab.data import as_splits
from droplab.errors import ConfigError, DataError
from droplab.train import TrainConfig, Trainer, fit
from droplab.train.metrics import auroc


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    y = (x[:, 0] - x[:, 1] + 0.3 * rng.normal(size=n) > 0).astype(np.float64)  # float 0/1
    return x, y


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 1))


def test_one_logit_model_trains_with_bce_and_reports_accuracy():
    x, y = _data()
    splits = as_splits(x, y, n_outputs=1, quiet=True)
    assert splits.task == "binary"
    model = _model()
    result = fit(model, splits, TrainConfig(epochs=15, lr=1e-2, batch_size=32))
    assert result.task == "binary"
    first, last = result.history[0], result.history[-1]
    assert set(last) >= {"train_loss", "val_loss", "val_acc", "train_eval_acc"}
    assert last["val_loss"] < first["val_loss"] and last["val_acc"] > 0.9
    # the reported loss is BCE with logits of the eval-mode outputs, and the accuracy (logit > 0)
    model.eval()
    with torch.no_grad():
        out = model(splits.x_val)
    yv = splits.y_val[:, None]
    assert result.val["loss"] == pytest.approx(F.binary_cross_entropy_with_logits(out, yv).item(), rel=1e-5)
    assert result.val["acc"] == pytest.approx(((out > 0) == (yv > 0.5)).float().mean().item())
    assert auroc(out, splits.y_val) > 0.95
    assert "acc" in str(result.summary())


def test_binary_task_is_deterministic():
    x, y = _data(120)
    splits = as_splits(x, y, n_outputs=1, quiet=True)
    a = fit(_model(), splits, TrainConfig(epochs=2, batch_size=16)).history
    b = fit(_model(), splits, TrainConfig(epochs=2, batch_size=16)).history
    assert [r["val_loss"] for r in a] == [r["val_loss"] for r in b]


def test_binary_task_errors():
    x = torch.randn(20, 6)
    with pytest.raises(DataError, match=r"train: task 'binary' needs 0/1 targets, got values \[0\.0, 1\.0, 2\.0\]"):
        Trainer(_model(), TrainConfig(epochs=1)).fit((x, torch.arange(20.0) % 3), task="binary")
    two = nn.Linear(6, 2)
    with pytest.raises(DataError, match="a binary task needs a model with one output \\(a logit\\), got 2"):
        Trainer(two, TrainConfig(epochs=1)).fit((x, (torch.arange(20) % 2).float()), task="binary")
    with pytest.raises(ConfigError, match="task must be one of 'classification', 'regression', 'binary'; got 'bin'"):
        Trainer(_model(), TrainConfig(epochs=1)).fit((x, torch.zeros(20)), task="bin")
    with pytest.raises(ConfigError, match="rdrop is for classification and regression, not a binary task"):
        Trainer(_model(), TrainConfig(epochs=1, rdrop=1.0)).fit((x, (torch.arange(20) % 2).float()), task="binary")
