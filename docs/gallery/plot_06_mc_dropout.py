"""
MC dropout: predictive uncertainty, and what it costs
=====================================================

Keeping dropout on at inference and averaging T stochastic passes is Monte Carlo dropout:
Srivastava et al. (JMLR 2014, Fig. 11) show it matches the deterministic "weight scaling" pass
at about T = 50; Gal & Ghahramani (ICML 2016, arXiv:1506.02142) read the spread of the T
predictions as model uncertainty. :func:`droplab.mc_predict` switches on the dropout layers
only (batch norm stays in eval mode) and returns the mean and the uncertainty.

1. Regression on a noisy sine (training inputs in [-3, 3]), an MLP with dropout 0.1: where is
   the predictive spread wider, inside the training range or beyond it? The example prints
   both. (How much the spread grows away from the data depends on the rate and the
   architecture; it is not guaranteed to grow.)
2. Classification on MNIST-1D: accuracy of MC averaging against weight scaling as T grows
   (:func:`droplab.inference.mc_vs_weight_scaling`), and the cost: T passes cost about T times
   one pass.
"""

# %%
# Uncertainty away from the data
# ------------------------------
import time

import matplotlib.pyplot as plt
import torch
from torch import nn

import droplab
import droplab.nn as dn
from droplab.train import TrainConfig, fit

g = torch.Generator().manual_seed(0)
x = torch.rand(400, 1, generator=g) * 6 - 3
y = torch.sin(x).squeeze(1) + 0.1 * torch.randn(400, generator=g)
torch.manual_seed(0)
net = nn.Sequential(nn.Linear(1, 256), nn.ReLU(), dn.Dropout(0.1), nn.Linear(256, 256), nn.ReLU(),
                    dn.Dropout(0.1), nn.Linear(256, 1))
fit(net, (x, y.unsqueeze(1)), TrainConfig(optimizer="adam", lr=3e-3, epochs=150, batch_size=50,
                                          eval_train=False, seed=0), task="regression")
grid = torch.linspace(-6, 6, 300).unsqueeze(1)
out = droplab.mc_predict(net, grid, samples=100, seed=0, task="regression")
mean, sd = out.mean.squeeze(1), out.variance.squeeze(1).sqrt()
unc, ax = plt.subplots(figsize=(8, 3.4))
ax.scatter(x.squeeze(1), y, s=4, color="grey", alpha=0.5, label="training data")
ax.plot(grid.squeeze(1), torch.sin(grid).squeeze(1), "k:", lw=1, label="sin(x)")
ax.plot(grid.squeeze(1), mean, color="C0", label="MC mean, T = 100")
ax.fill_between(grid.squeeze(1), mean - 2 * sd, mean + 2 * sd, alpha=0.25, color="C0",
                label="+- 2 MC standard deviations")
ax.axvspan(-6, -3, color="C1", alpha=0.06)
ax.axvspan(3, 6, color="C1", alpha=0.06)
ax.set(xlabel="x (shaded: no training data)", ylabel="y", title="MC dropout (p = 0.1) on a noisy sine")
ax.legend(fontsize=7, loc="lower left")
unc.tight_layout()
inside = sd[(grid.squeeze(1).abs() <= 3)].mean()
outside = sd[(grid.squeeze(1).abs() > 4)].mean()
print(f"mean predictive sd inside the training range {inside:.3f}, beyond |x| > 4 {outside:.3f}")

# %%
# MC averaging against weight scaling, and the cost
# -------------------------------------------------
from droplab.data import load_dataset
from droplab.inference import mc_vs_weight_scaling
from droplab.models import ModelSpec, build_model, parse_dropout

splits = load_dataset("mnist1d", subsample=1000)
model = build_model(ModelSpec(kind="mlp", hidden=(256, 256), dropout=parse_dropout("hidden=0.5")),
                    splits.input_shape, splits.n_classes, seed=0)
fit(model, (splits.x_train, splits.y_train), TrainConfig(optimizer="adam", lr=1e-3, epochs=30, seed=0,
                                                          eval_train=False))
rows = mc_vs_weight_scaling(model, splits.x_test, splits.y_test, T_values=(1, 2, 5, 10, 20, 50),
                            seeds=(0, 1, 2))
Ts = [r["T"] for r in rows]
avg, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
for ax, key, name in ((a1, "acc", "test accuracy"), (a2, "nll", "test NLL")):
    ax.plot(Ts, [r[key] for r in rows], "o-", label="MC averaging (mean over 3 sampling seeds)")
    ax.fill_between(Ts, [r[key + "_lo"] for r in rows], [r[key + "_hi"] for r in rows], alpha=0.2)
    ax.axhline(rows[0]["ws_" + key], color="C1", ls="--", label="weight scaling (one eval pass)")
    ax.set(xscale="log", xlabel="T (sampled networks)", ylabel=name)
a1.legend(fontsize=7)
avg.tight_layout()
for r in rows:
    print(f"T={r['T']:3d}  MC acc {r['acc']:.4f}  NLL {r['nll']:.4f}   "
          f"(weight scaling: acc {r['ws_acc']:.4f}, NLL {r['ws_nll']:.4f})")

model.eval()
with torch.no_grad():
    t0 = time.perf_counter()
    model(splits.x_test)
    one = time.perf_counter() - t0
t0 = time.perf_counter()
droplab.mc_predict(model, splits.x_test, samples=50, seed=0)
fifty = time.perf_counter() - t0
print(f"one eval pass over {len(splits.x_test)} examples: {one * 1e3:.1f} ms; "
      f"MC with T = 50: {fifty * 1e3:.1f} ms ({fifty / one:.0f}x)")
