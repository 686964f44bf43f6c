"""
Choosing the rate with validation data: seeds and the one-SE rule
=================================================================

Srivastava et al. (JMLR 2014) recommend dropping about 20% of inputs and 50% of hidden units,
and report test error flat for retain probabilities 0.4-0.8 (drop rates 0.2-0.6). That range is
where to *start*; which rate is best for your model and data is read off validation data,
over several seeds, because one seed's curve is noisy enough to pick the wrong rate.

This page sweeps eight hidden rates over five seeds (1000 MNIST-1D training examples, a 256-256
MLP, 40 epochs) and shows (left) each seed's validation accuracy against the rate with the
rate each seed alone would pick, and (right) the mean with its 95% interval, the best mean
(star) and the one-standard-error choice (diamond): the largest rate whose mean is within one
standard error of the best, the more regularized of the statistically indistinguishable
choices (Breiman et al. 1984; Hastie, Tibshirani & Friedman 2009, sec. 7.10).

The same study from the command line::

    droplab sweep --dropout hidden=0,0.1,0.2,0.3,0.4,0.5,0.6,0.7 --seeds 5 --subsample 1000 \\
        --hidden 256,256 --optimizer adam --lr 1e-3 --epochs 40 --store rate.db
    droplab report rate.db -o rate.html --png rate-figures/
"""

# %%
import tempfile
from pathlib import Path

from droplab.models import ModelSpec
from droplab.report import load_study
from droplab.sweep import run_sweep
from droplab.train import TrainConfig

rates = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
store = Path(tempfile.mkdtemp(prefix="droplab-rate-")) / "rate.db"
result = run_sweep(
    ModelSpec(kind="mlp", hidden=(256, 256)),
    data={"name": "mnist1d", "subsample": 1000},
    space={"dropout.hidden": rates},
    seeds=5,
    train=TrainConfig(optimizer="adam", lr=1e-3, batch_size=100, epochs=40),
    store=store,
    progress=False,
)
print("best:", result.best, "| one-SE choice:", result.one_se)

# %%
# Per seed, and over seeds
# ------------------------
# Each run is scored at the epoch the sweep kept; the right panel is what the report's
# response figure shows.
import matplotlib.pyplot as plt

from droplab.stats import mean_ci

study = load_study(store)
per_seed = {}  # seed -> [val_acc at each rate]
estimates = []
for config in study.configurations:
    values = [run.result["val_acc"] for run in config.runs]
    estimates.append(mean_ci(values))
    for run in config.runs:
        per_seed.setdefault(run.seed, []).append(run.result["val_acc"])

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
for seed, values in per_seed.items():
    (line,) = left.plot(rates, values, marker="o", ms=3, lw=1, label=f"seed {seed}")
    k = max(range(len(values)), key=values.__getitem__)
    left.plot(rates[k], values[k], marker="*", ms=12, color=line.get_color())
left.set(title="one seed at a time: each picks its own rate (star)", xlabel="hidden dropout rate",
         ylabel="validation accuracy")
left.legend(fontsize=7)
means = [e.mean for e in estimates]
right.fill_between(rates, [e.lo for e in estimates], [e.hi for e in estimates], alpha=0.2,
                   label="95% CI of the mean")
right.errorbar(rates, means, yerr=[e.se for e in estimates], marker="o", capsize=3,
               label="mean +- 1 SE")
best = max(range(len(rates)), key=means.__getitem__)
threshold = means[best] - estimates[best].se
one_se = max(i for i in range(len(rates)) if means[i] >= threshold)
right.axhline(threshold, color="grey", ls=":", lw=1, label="best mean - 1 SE")
right.plot(rates[best], means[best], "*", ms=14, color="C3", label=f"best mean: p={rates[best]}")
right.plot(rates[one_se], means[one_se], "D", ms=9, color="C2", label=f"one-SE choice: p={rates[one_se]}")
right.set(title="five seeds: mean, interval, one-SE rule", xlabel="hidden dropout rate")
right.legend(fontsize=7)
fig.tight_layout()

picks = {seed: rates[max(range(len(v)), key=v.__getitem__)] for seed, v in per_seed.items()}
print("rate each seed alone would pick:", picks)
print(f"best mean: p={rates[best]} ({means[best]:.3f}), one-SE choice: p={rates[one_se]}")
