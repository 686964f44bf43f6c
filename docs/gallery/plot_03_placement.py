"""
Where to place dropout: input, hidden, recurrent, attention
============================================================

Every builder of :mod:`droplab.models` has named *places* for dropout (``droplab.models.PLACES``):
``input`` (on the model input), ``hidden`` (after each hidden activation, or on each RNN
layer's output, or on each transformer sublayer's output), ``recurrent`` (RNNs: one mask per
sequence, or DropConnect on the hidden-to-hidden weights), ``attention`` (transformers: on the
attention weights) and ``embedding`` (whole word types). This page prints where each builder
puts its layers, then sweeps input and hidden rates together on an MLP; the response figure
then has one column per place.

The sweep from the command line::

    droplab sweep --dropout input=0,0.1,0.2 --dropout hidden=0,0.25,0.5 --seeds 3 \\
        --subsample 1000 --hidden 256,256 --optimizer adam --epochs 30 --store places.db
    droplab report places.db --png places-figures/
"""

# %%
# Where each builder puts its dropout
# -----------------------------------
from droplab.models import ModelSpec, build_model, parse_dropout

specs = {
    "mlp": (ModelSpec(kind="mlp", hidden=(64, 64), dropout=parse_dropout("input=0.1,hidden=0.5")),
            (40,)),
    "cnn1d": (ModelSpec(kind="cnn1d", hidden=(16, 16), kernel_size=(5, 3),
                        dropout=parse_dropout("hidden=0.2:spatial")), (1, 40)),
    "gru": (ModelSpec(kind="gru", hidden=(32,), dropout=parse_dropout("input=0.1:locked,recurrent=0.3")),
            (40, 1)),
    "transformer": (ModelSpec(kind="transformer", hidden=(32,), heads=4, layers=1, ff_dim=64,
                              dropout=parse_dropout("attention=0.1,hidden=0.1")), (16, 8)),
}
for kind, (spec, shape) in specs.items():
    print(f"--- {kind}: {spec.dropout}")
    print(build_model(spec, shape, 10, seed=0))

# %%
# Your own model
# --------------
# In a model of your own, put ``droplab.nn`` layers (or torch's) where you want them; the same
# rules of thumb apply: a small rate on inputs, a larger one after wide hidden layers, none
# right before the output layer's logits, a locked mask (or weight dropout) inside recurrences.
import torch
from torch import nn

import droplab.nn as dn


class MyNet(nn.Module):
    def __init__(self, p_in=0.1, p_hidden=0.5):
        super().__init__()
        self.drop_in = dn.Dropout(p_in)
        self.body = nn.Sequential(nn.Linear(40, 128), nn.ReLU(), dn.Dropout(p_hidden),
                                  nn.Linear(128, 128), nn.ReLU(), dn.Dropout(p_hidden))
        self.head = nn.Linear(128, 10)

    def forward(self, x):
        return self.head(self.body(self.drop_in(x)))


print(MyNet())
print(MyNet()(torch.randn(4, 40)).shape)

# %%
# Input and hidden rates swept together
# -------------------------------------
import tempfile
from pathlib import Path

from droplab.cli import main as droplab
from droplab.report import load_study, make_figures

store = Path(tempfile.mkdtemp(prefix="droplab-places-")) / "places.db"
droplab(["sweep", "--dropout", "input=0,0.1,0.2", "--dropout", "hidden=0,0.25,0.5", "--seeds", "3",
         "--subsample", "1000", "--hidden", "256,256", "--optimizer", "adam", "--epochs", "30",
         "--store", str(store), "--quiet"])
response = make_figures(load_study(store))["response"]
