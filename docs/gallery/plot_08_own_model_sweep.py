"""
Sweeping the dropout rate of your own model
===========================================

:func:`droplab.sweep.run_sweep` takes a function that builds *your* model from a configuration,
plain tensors (or a :class:`droplab.data.Splits`) and a search space; it trains every
configuration with every seed (runs with the same seed share initialization and data order, so
comparisons are paired), stores everything in a SQLite study and returns the best configuration
and the one-standard-error choice. The study then feeds the same report as ``droplab sweep``.

Here: a small convolutional network of our own on scikit-learn's 8x8 digits (bundled, offline),
its dropout rate and its width as axes, 3 seeds, 10 epochs.
"""

# %%
import tempfile
from pathlib import Path

import torch
from torch import nn

import droplab.nn as dn
from droplab.data import load_dataset
from droplab.report import load_study, make_figures
from droplab.sweep import run_sweep
from droplab.train import TrainConfig

splits = load_dataset("digits")
print(splits.name, splits.input_shape, "train", len(splits.x_train), "val", len(splits.x_val),
      "test", len(splits.x_test))


class SmallConv(nn.Module):
    def __init__(self, width: int, p: float):
        super().__init__()
        self.features = nn.Sequential(
            nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
            dn.SpatialDropout(p / 2), nn.MaxPool2d(2), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(width * 16, 64), nn.ReLU(), dn.Dropout(p), nn.Linear(64, 10))

    def forward(self, x):
        return self.head(self.features(x))


def build(cfg):
    return SmallConv(cfg["width"], cfg["p"])


store = Path(tempfile.mkdtemp(prefix="droplab-own-")) / "own.db"
result = run_sweep(build, data=splits, space={"p": [0.0, 0.3, 0.6], "width": [8, 16]},
                   seeds=3, train=TrainConfig(optimizer="adam", lr=3e-3, epochs=10, batch_size=64),
                   store=store, progress=False)
print("best:", result.best)
print("one-SE choice:", result.one_se)
for key, t in result.test.items():
    print(f"test split, {key} ({', '.join(t['selected_as'])}): {t['metric']} {t['mean']:.3f} "
          f"[{t['lo']:.3f}, {t['hi']:.3f}] over {t['n']} seeds")

# %%
# The report's figures, from the stored study
# -------------------------------------------
figures = make_figures(load_study(store))
