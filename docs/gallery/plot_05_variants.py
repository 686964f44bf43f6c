"""
The variants: what each one drops, and a quick comparison
=========================================================

Dropout's relatives differ in *what* they drop. On a feature map (N, C, H, W): plain dropout
(Srivastava et al., JMLR 2014) drops single activations, which neighbouring pixels largely
restore; SpatialDropout (Tompson et al., CVPR 2015) drops whole channels; DropBlock (Ghiasi,
Lin & Le, NeurIPS 2018, arXiv:1810.12890) drops contiguous blocks. On sequences, LockedDropout
(variational dropout, Gal & Ghahramani, NeurIPS 2016, arXiv:1512.05287) keeps one mask for every
time step. DropConnect (Wan et al., ICML 2013) drops weights instead of activations;
GaussianDropout multiplies by noise instead of zeros; ConcreteDropout (Gal, Hron & Kendall,
NeurIPS 2017, arXiv:1705.07832) learns its rate.

The first figure shows the masks each layer draws on the same input of ones (one example,
four channels, 16x16; dark = dropped). The second trains an MLP on MNIST-1D with each
hidden-layer variant (1000 examples, 30 epochs, 3 seeds)::

    droplab sweep --axis "dropout=;hidden=0.3;hidden=0.3:gaussian;hidden=0.3:dropconnect;hidden=0.3:concrete" \\
        --seeds 3 --subsample 1000 --hidden 256,256 --optimizer adam --epochs 30
"""

# %%
# The masks
# ---------
import matplotlib.pyplot as plt
import torch

import droplab.nn as dn

x = torch.ones(1, 4, 16, 16)
layers = {
    "Dropout(0.3)": dn.Dropout(0.3),
    "SpatialDropout(0.3)": dn.SpatialDropout(0.3),
    "DropBlock2d(0.3, block_size=5)": dn.DropBlock2d(0.3, block_size=5),
    "GaussianDropout(0.3)": dn.GaussianDropout(0.3),
}
masks, axes = plt.subplots(len(layers), 4, figsize=(7, 7.5))
for row, (name, layer) in zip(axes, layers.items()):
    layer.generator = torch.Generator().manual_seed(1)
    y = layer.train()(x)[0]
    for c, ax in enumerate(row):
        ax.imshow(y[c].numpy(), cmap="viridis", vmin=0, vmax=float(y.max()))
        ax.set_xticks([])
        ax.set_yticks([])
        if c == 0:
            ax.set_ylabel(name, fontsize=8)
        if row is axes[0]:
            ax.set_title(f"channel {c}", fontsize=8)
masks.suptitle("what each layer keeps of an input of ones (inverted scaling: kept = 1/(1-p))", fontsize=9)
masks.tight_layout()

# %%
# Per-step against locked masks on a sequence
# -------------------------------------------
seq = torch.ones(1, 24, 12)  # (N, T, F): 24 time steps, 12 features
per_step = dn.Dropout(0.3, generator=torch.Generator().manual_seed(0))(seq)[0]
locked = dn.LockedDropout(0.3, batch_first=True, generator=torch.Generator().manual_seed(0))(seq)[0]
seqfig, (a, b) = plt.subplots(1, 2, figsize=(8, 2.6), sharey=True)
a.imshow(per_step.T.numpy(), aspect="auto", cmap="viridis")
a.set(title="Dropout: a fresh mask at each step", xlabel="time step", ylabel="feature")
b.imshow(locked.T.numpy(), aspect="auto", cmap="viridis")
b.set(title="LockedDropout: one mask for the sequence", xlabel="time step")
seqfig.tight_layout()

# %%
# A quick comparison on MNIST-1D
# ------------------------------
import tempfile
from pathlib import Path

from droplab.models import ModelSpec
from droplab.report import load_study
from droplab.stats import mean_ci, paired_difference
from droplab.sweep import run_sweep
from droplab.train import TrainConfig

store = Path(tempfile.mkdtemp(prefix="droplab-variants-")) / "variants.db"
run_sweep(ModelSpec(kind="mlp", hidden=(256, 256)), data={"name": "mnist1d", "subsample": 1000},
          space={"dropout": ["", "hidden=0.3", "hidden=0.3:gaussian", "hidden=0.3:dropconnect",
                             "hidden=0.3:concrete"]},
          seeds=3, train=TrainConfig(optimizer="adam", lr=1e-3, epochs=30), store=store,
          progress=False)
study = load_study(store)
scores = {}
for c in study.configurations:
    label = c.params["dropout"] or "none"
    scores[label] = {r.seed: r.result["val_acc"] for r in c.runs}
for label, per_seed in scores.items():
    est = mean_ci(list(per_seed.values()))
    line = f"{label:12s} val acc {est.mean:.3f} [{est.lo:.3f}, {est.hi:.3f}]"
    if label != "none":
        d = paired_difference(per_seed, scores["none"])
        line += f"   vs none {d.mean:+.3f} [{d.lo:+.3f}, {d.hi:+.3f}]"
    print(line)
