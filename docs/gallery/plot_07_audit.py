"""
The audit: dropout that is still on at inference, and other misuse
==================================================================

The most common dropout bug is a train/eval inconsistency: ``F.dropout(x, p)`` inside a
``forward`` keeps its default ``training=True``, so the "deterministic" predictions of the
model in eval mode are random. :func:`droplab.audit` runs one forward pass in eval mode, lists
every stochastic operation the pass reaches, and flags the known mistakes
(``droplab.inference.WARNING_CODES``): active in eval mode, spatial dropout on an input of the
wrong rank, dropout on the output, input rates above 0.2, any rate of 0.8 or more.

From the command line, on a model saved by ``droplab train --save``::

    droplab train --dropout input=0.5,hidden=0.5 --epochs 1 --save model.pt
    droplab audit model.pt            # --json for a machine-readable report, --strict to fail CI
"""

# %%
# A model with four mistakes
# --------------------------
import torch
import torch.nn.functional as F
from torch import nn

import droplab
import droplab.nn as dn


class Buggy(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = dn.Dropout(0.5)               # 50% of the inputs: above the 20% advice
        self.fc1 = nn.Linear(20, 64)
        self.drop2d = nn.Dropout2d(0.2)          # channel dropout given (N, F): wrong rank
        self.fc2 = nn.Linear(64, 3)
        self.out = nn.Dropout(0.1)               # dropout on the logits

    def forward(self, x):
        h = F.relu(self.fc1(self.inp(x)))
        h = F.dropout(h, 0.3)                    # training defaults to True: on in eval mode
        h = self.drop2d(h)
        return self.out(self.fc2(h))


class Fixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(dn.Dropout(0.1), nn.Linear(20, 64), nn.ReLU(), dn.Dropout(0.3),
                                 nn.Linear(64, 3))

    def forward(self, x):
        return self.net(x)


x = torch.randn(32, 20)
torch.manual_seed(0)
buggy, fixed = Buggy().eval(), Fixed().eval()
report = droplab.audit(buggy, x)
print(report.format())
print("warning codes:", sorted(report.codes))

# %%
print(droplab.audit(fixed, x).format())

# %%
# What the bug does to predictions
# --------------------------------
# Twenty eval-mode passes over the same 32 inputs: the buggy model's predicted class changes
# from pass to pass; the fixed model's never does.
import matplotlib.pyplot as plt

with torch.no_grad():
    b = torch.stack([buggy(x).argmax(1) for _ in range(20)])
    f = torch.stack([fixed(x).argmax(1) for _ in range(20)])
flips_b = (b != b[0]).float().mean(0)
flips_f = (f != f[0]).float().mean(0)
inconsistency, ax = plt.subplots(figsize=(8, 2.8))
ax.bar(torch.arange(32) - 0.2, flips_b, width=0.4, label="buggy: F.dropout without training flag")
ax.bar(torch.arange(32) + 0.2, flips_f, width=0.4, label="fixed")
ax.set(xlabel="example", ylabel="share of passes that\nchange the prediction",
       title="20 eval-mode passes over the same inputs")
ax.legend(fontsize=8)
inconsistency.tight_layout()
print(f"predictions that changed in some pass: buggy {int((flips_b > 0).sum())}/32, "
      f"fixed {int((flips_f > 0).sum())}/32")

# %%
# The command line, on a saved model
# ----------------------------------
import tempfile
from pathlib import Path

from droplab.cli import main as droplab_cli

path = Path(tempfile.mkdtemp(prefix="droplab-audit-")) / "model.pt"
droplab_cli(["train", "--dropout", "input=0.5,hidden=0.5", "--subsample", "200", "--epochs", "1",
             "--save", str(path), "--json"])
droplab_cli(["audit", str(path)])
