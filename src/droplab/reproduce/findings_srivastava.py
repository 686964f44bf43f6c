"""Findings 1-6: Srivastava et al. (2014)'s tables and figures, rerun at a small scale.

Dropout against none (Table 2), the regularizer ladder (Table 9), the rate curve with n or p*n
fixed (Fig. 9), the data-set size (Fig. 10), MC averaging against weight scaling (Fig. 11) and
Bernoulli against Gaussian dropout (Table 10). Absolute MNIST numbers cannot be rerun offline:
the shapes are reproduced on MNIST-1D (Greydanus 2020, arXiv:2011.14439) and a Fashion-MNIST
subset (Xiao et al. 2017, arXiv:1708.07747), whose MLPs train with Adam at torch's default
lr 1e-3. Input dropout is not used: MNIST-1D's 40 inputs are a dense signal, not MNIST's
redundant pixels.
"""

from __future__ import annotations

import math

from droplab.models import ModelSpec
from droplab.reproduce._common import (
    DROP,
    HIDDEN,
    SRIVASTAVA,
    bar,
    diff,
    est,
    fmt,
    line,
    load_mnist1d,
    mlp_epochs,
    mlp_spec,
    setting_mlp,
    spearman,
    train_config,
    txt,
)
from droplab.reproduce._train import Arm, Skip, load, train_group
from droplab.reproduce.registry import Context, Outcome, Spec, pub


__all__ = ["SPECS"]


# --- 1. dropout vs none ---------------------------------------------------------------------------
def _measure_dropout_vs_none(ctx: Context) -> Outcome:
    """Dropout against no dropout on over-parameterized MLPs (Srivastava et al. 2014, Table 2)."""
    parts = [
        ("mnist1d", "MNIST-1D", 1e-2, mlp_epochs(ctx)),
        ("fashion_mnist", "Fashion-MNIST", 1e-3, ctx.pick(2, 60, 120)),
    ]
    values, texts, notes, settings, bars, verdicts = {}, [], [], [], [], []
    for i, (name, label, lr, epochs) in enumerate(parts):
        try:
            splits = load(ctx, name, subsample=ctx.pick(200, 1000, 1000))
        except Skip as exc:
            notes.append(f"{label} skipped: {exc}")
            continue
        cfg = train_config(ctx, epochs, lr=lr)
        arms = [Arm("none", cfg, (0.0, 0.0)), Arm("dropout", cfg, (DROP, DROP))]
        res = train_group(ctx, splits, mlp_spec(HIDDEN), arms, span=(i / 2, (i + 1) / 2))
        none, drop = est(res.errors("none")), est(res.errors("dropout"))
        d = diff(res.errors("dropout"), res.errors("none"))
        values[f"{label} no dropout"] = none.to_dict()
        values[f"{label} dropout"] = drop.to_dict()
        values[f"{label} dropout - none"] = d.to_dict()
        ok = d.mean < 0 and d.hi < 0
        verdicts.append(ok)
        texts.append(f"{label}: none {txt(none)}, dropout {txt(drop)}, "
                     f"difference {txt(d, ' pts', signed=True)}")
        notes.append(f"{label}: {'passes' if ok else 'fails'} the criterion")
        settings.append(setting_mlp(ctx, splits, epochs=epochs, lr=lr))
        bars += [bar(f"{label}\nnone", none), bar(f"{label}\ndropout", drop)]
    if not verdicts:
        raise Skip("; ".join(notes))
    return Outcome(
        "; ".join(texts), values, all(verdicts), " | ".join(settings) + f"; dropout: hidden {DROP}",
        notes, {"panels": [{"title": "Test error", "ylabel": "test error (%)", "bars": bars}]},
    )


# --- 2. regularizer ladder -----------------------------------------------------------------------
_LADDER = ("L2", "L2+L1", "max-norm", "dropout+L2", "dropout+max-norm")
_LADDER_PUBLISHED = {"L2": 1.62, "L2+L1": 1.60, "max-norm": 1.35, "dropout+L2": 1.25,
                     "dropout+max-norm": 1.05}


def _measure_regularizer_ladder(ctx: Context) -> Outcome:
    """L2, L2+L1, max-norm, dropout+L2, dropout+max-norm (Srivastava et al. 2014, Table 9)."""
    splits = load_mnist1d(ctx)
    l2, l1, c = 1e-4, 1e-5, 3.0
    e = mlp_epochs(ctx)
    none, drop = (0.0, 0.0), (DROP, DROP)
    arms = [
        Arm("L2", train_config(ctx, e, l2=l2), none),
        Arm("L2+L1", train_config(ctx, e, l2=l2, l1=l1), none),
        Arm("max-norm", train_config(ctx, e, max_norm=c), none),
        Arm("dropout+L2", train_config(ctx, e, l2=l2), drop),
        Arm("dropout+max-norm", train_config(ctx, e, max_norm=c), drop),
    ]
    res = train_group(ctx, splits, mlp_spec(HIDDEN), arms)
    ests = {k: est(res.errors(k)) for k in _LADDER}
    plain = [ests[k].mean for k in _LADDER[:3]]
    dropped = [ests[k].mean for k in _LADDER[3:]]
    agrees = max(dropped) < min(plain)
    rho = spearman([_LADDER_PUBLISHED[k] for k in _LADDER], [ests[k].mean for k in _LADDER])
    order = sorted(_LADDER, key=lambda k: ests[k].mean)
    return Outcome(
        ", ".join(f"{k} {txt(ests[k])}" for k in _LADDER),
        {k: v.to_dict() for k, v in ests.items()},
        agrees,
        setting_mlp(ctx, splits) + f"; L2 {l2:g} (loss += l2*sum w^2), L1 {l1:g}, max-norm c={c:g}, "
        f"dropout: hidden {DROP}",
        [f"measured order, best first: {' < '.join(order)}",
         f"Spearman rank correlation with the published errors: {fmt(rho, 2)} (for information; "
         f"not part of the criterion)"],
        {"panels": [{"title": "Test error by regularizer", "ylabel": "test error (%)",
                     "bars": [bar(k, ests[k]) for k in _LADDER]}]},
    )


# --- 3. dropout rate curve -----------------------------------------------------------------------
def _measure_rate_curve(ctx: Context) -> Outcome:
    """Test error against the retain probability, n or p*n fixed (Srivastava et al. 2014, Fig. 9)."""
    splits = load_mnist1d(ctx)
    retains = ctx.pick((0.1, 0.5, 1.0), (0.1, 0.25, 0.5, 0.75, 1.0),
                       (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0))
    n, pn = 128, 32
    cfg = train_config(ctx, mlp_epochs(ctx))
    arms = [Arm(f"n:{r}", cfg, (1.0 - r, 1.0 - r)) for r in retains]
    # Population cost grows with the width: the n-fixed group is about half the work.
    res_n = train_group(ctx, splits, mlp_spec((n, n)), arms, span=(0.0, 0.45))
    fixed_n = [est(res_n.errors(f"n:{r}")) for r in retains]
    widths = {r: max(1, round(pn / r)) for r in retains}
    weight = {r: widths[r] ** 2 for r in retains}
    total, done = sum(weight.values()), 0.0
    fixed_pn = []
    for r in retains:
        w = widths[r]
        span = (0.45 + 0.55 * done / total, 0.45 + 0.55 * (done + weight[r]) / total)
        res = train_group(ctx, splits, mlp_spec((w, w)), [Arm(f"pn:{r}", cfg, (1.0 - r, 1.0 - r))],
                          span=span)
        fixed_pn.append(est(res.errors(f"pn:{r}")))
        done += weight[r]
    means_n = [e.mean for e in fixed_n]
    means_pn = [e.mean for e in fixed_pn]
    mid = [e.mean for r, e in zip(retains, fixed_n) if 0.4 <= r <= 0.8]
    low = means_n[retains.index(min(retains))]
    a = bool(mid) and low > min(mid)
    spread_n, spread_pn = max(means_n) - min(means_n), max(means_pn) - min(means_pn)
    b = spread_pn < spread_n
    values = {f"n={n}, retain {r}": e.to_dict() for r, e in zip(retains, fixed_n)}
    values.update({f"p*n={pn} (n={widths[r]}), retain {r}": e.to_dict()
                   for r, e in zip(retains, fixed_pn)})
    text = (
        f"n fixed: {', '.join(f'{r:g}: {fmt(m)}%' for r, m in zip(retains, means_n))} "
        f"(spread {fmt(spread_n)} pts); p*n fixed: "
        f"{', '.join(f'{r:g}: {fmt(m)}%' for r, m in zip(retains, means_pn))} (spread {fmt(spread_pn)} pts)"
    )
    return Outcome(
        text, values, a and b,
        setting_mlp(ctx, splits, hidden=("n", "n")) + f"; hidden dropout 1 - retain; n = {n} "
        f"fixed, or n = {pn}/retain so that p*n = {pn}",
        [f"(a) underfitting at retain {min(retains):g}: {'yes' if a else 'no'} "
         f"({fmt(low)}% vs best in [0.4, 0.8] {fmt(min(mid)) if mid else 'n/a'}%)",
         f"(b) p*n fixed is flatter: {'yes' if b else 'no'} "
         f"(spread {fmt(spread_pn)} vs {fmt(spread_n)} pts)"],
        {"panels": [{"title": "Test error against retain probability", "xlabel": "retain probability p",
                     "ylabel": "test error (%)",
                     "lines": [line(f"n = {n} fixed", retains, fixed_n),
                               line(f"p*n = {pn} fixed", retains, fixed_pn)]}]},
    )


# --- 4. data set size ----------------------------------------------------------------------------
def _measure_data_size(ctx: Context) -> Outcome:
    """Dropout's gain against the number of training examples (Srivastava et al. 2014, Fig. 10)."""
    sizes = ctx.pick((100, 200), (100, 300, 1000, 3600), (100, 250, 500, 1000, 2000, 3600))
    steps = ctx.pick(20, 600, 1500)
    gains, nones, drops = [], [], []
    done = 0
    for n in sizes:
        splits = load(ctx, "mnist1d", subsample=n)
        # At least `steps` updates (small N) and at least the epochs of the other findings
        # (large N), so that no run -- dropout runs train slower -- is cut short.
        epochs = max(mlp_epochs(ctx), math.ceil(steps / math.ceil(n / 100)))
        cfg = train_config(ctx, epochs)
        arms = [Arm("none", cfg, (0.0, 0.0)), Arm("dropout", cfg, (DROP, DROP))]
        # Every size gets the same number of updates, so the cost is about equal per size.
        res = train_group(ctx, splits, mlp_spec(HIDDEN), arms,
                          span=(done / len(sizes), (done + 1) / len(sizes)))
        done += 1
        gains.append(diff(res.errors("none"), res.errors("dropout")))
        nones.append(est(res.errors("none")))
        drops.append(est(res.errors("dropout")))
    means = [g.mean for g in gains]
    best = max(range(len(sizes)), key=lambda i: means[i])
    a = gains[0].lo <= 0 if math.isfinite(gains[0].lo) else gains[0].mean <= 0
    b = 0 < best < len(sizes) - 1
    values = {f"N={n} gain (none - dropout)": g.to_dict() for n, g in zip(sizes, gains)}
    values.update({f"N={n} no dropout": e.to_dict() for n, e in zip(sizes, nones)})
    values.update({f"N={n} dropout": e.to_dict() for n, e in zip(sizes, drops)})
    return Outcome(
        "gain of dropout (pts of test error): "
        + ", ".join(f"N={n}: {txt(g, '', signed=True)}" for n, g in zip(sizes, gains)),
        values, a and b,
        f"mnist1d subsets of N examples (nested), {len(splits.x_test)} test; MLP 40-128-128-10 ReLU; "
        f"Adam lr 0.01, batch min(100, N), at least {steps} updates and {mlp_epochs(ctx)} epochs at "
        f"every N; dropout: hidden {DROP}; "
        f"{len(ctx.seeds)} seeds",
        [f"(a) no gain at the smallest N (CI reaches 0 or below): {'yes' if a else 'no'}",
         f"(b) the largest gain is at an interior N: {'yes' if b else 'no'} (N={sizes[best]})"]
        + ([] if b else [f"the largest N here is {sizes[-1]} (the paper's goes to 50k): the "
                         f"shrinking part of the curve may lie beyond it"]),
        {"panels": [{"title": "Dropout's gain against N", "xlabel": "training examples N",
                     "ylabel": "error(none) - error(dropout), pts", "xlog": True,
                     "lines": [line("gain", sizes, gains)], "zero": True},
                    {"title": "Test error against N", "xlabel": "training examples N",
                     "ylabel": "test error (%)", "xlog": True,
                     "lines": [line("no dropout", sizes, nones), line("dropout", sizes, drops)]}]},
    )


# --- 5. MC averaging vs weight scaling -----------------------------------------------------------
def _measure_mc_vs_weight_scaling(ctx: Context) -> Outcome:
    """MC model averaging against weight scaling as T grows (Srivastava et al. 2014, Fig. 11)."""
    from droplab.inference import mc_vs_weight_scaling as compare

    splits = load_mnist1d(ctx)
    ts = ctx.pick((1, 2, 50), (1, 2, 5, 10, 20, 50, 100), (1, 2, 5, 10, 20, 50, 100, 200))
    cfg = train_config(ctx, mlp_epochs(ctx))
    res = train_group(ctx, splits, mlp_spec(HIDDEN), [Arm("dropout", cfg, (DROP, DROP))],
                      span=(0.0, 0.5), keep_models=True)
    diffs: dict[int, dict[int, float]] = {t: {} for t in ts}
    mc: dict[int, dict[int, float]] = {t: {} for t in ts}
    ws: dict[int, float] = {}
    for j, s in enumerate(ctx.seeds):
        rows = compare(res.model("dropout", s), splits.x_test, splits.y_test, T_values=ts,
                       seeds=(1000 + s,))
        for r in rows:
            mc[r["T"]][s] = 100 * (1 - r["acc"])
            diffs[r["T"]][s] = 100 * (1 - r["acc"]) - 100 * (1 - r["ws_acc"])
        ws[s] = 100 * (1 - rows[0]["ws_acc"])
        ctx.advance(0.5 + 0.5 * (j + 1) / len(ctx.seeds))
    d = {t: est(diffs[t]) for t in ts}
    e_mc = {t: est(mc[t]) for t in ts}
    e_ws = est(ws)
    d1, d50 = d[1], d[50]
    sd50 = d50.sd if math.isfinite(d50.sd) else 0.0
    agrees = d1.mean > 0 and d50.mean <= sd50
    values = {f"MC T={t}": e_mc[t].to_dict() for t in ts}
    values["weight scaling"] = e_ws.to_dict()
    values.update({f"MC T={t} - weight scaling": d[t].to_dict() for t in ts})
    return Outcome(
        f"weight scaling {txt(e_ws)}; MC minus weight scaling: "
        + ", ".join(f"T={t}: {txt(d[t], ' pts', 2, signed=True)}" for t in ts),
        values, agrees,
        setting_mlp(ctx, splits) + f"; dropout: hidden {DROP}; MC: T passes with dropout on, "
        f"probabilities averaged; one mask draw per model seed",
        [f"T=1 worse than weight scaling: {'yes' if d1.mean > 0 else 'no'} "
         f"({txt(d1, ' pts', 2, signed=True)})",
         f"T=50 within one sd of weight scaling (or better): {'yes' if d50.mean <= sd50 else 'no'} "
         f"(difference {fmt(d50.mean, 2)} pts, sd {fmt(sd50, 2)})"],
        {"panels": [{"title": "MC averaging vs weight scaling", "xlabel": "sampled networks T",
                     "ylabel": "test error (%)", "xlog": True,
                     "lines": [line("MC averaging", ts, [e_mc[t] for t in ts]),
                               line("weight scaling", ts, [e_ws for _ in ts])]}]},
    )


# --- 6. Bernoulli vs Gaussian --------------------------------------------------------------------
def _measure_bernoulli_vs_gaussian(ctx: Context) -> Outcome:
    """Bernoulli vs Gaussian noise of equal variance (Srivastava et al. 2014, Table 10)."""
    splits = load_mnist1d(ctx)
    cfg = train_config(ctx, mlp_epochs(ctx))
    bern = train_group(ctx, splits, mlp_spec(HIDDEN), [Arm("bernoulli", cfg, (DROP, DROP))],
                       span=(0.0, 0.3))
    gspec = ModelSpec(kind="mlp", hidden=HIDDEN, dropout={"hidden": {"p": DROP, "layer": "gaussian"}})
    gauss = train_group(ctx, splits, gspec, [Arm("gaussian", cfg)], span=(0.3, 1.0))
    b, g = est(bern.errors("bernoulli")), est(gauss.errors("gaussian"))
    d = diff(gauss.errors("gaussian"), bern.errors("bernoulli"))
    return Outcome(
        f"Bernoulli {txt(b)}, Gaussian {txt(g)}, Gaussian - Bernoulli {txt(d, ' pts', signed=True)}",
        {"Bernoulli": b.to_dict(), "Gaussian": g.to_dict(), "Gaussian - Bernoulli": d.to_dict()},
        d.mean <= 0,
        setting_mlp(ctx, splits) + f"; hidden p={DROP}: Bernoulli keep mask scaled by 1/(1-p), "
        f"or Gaussian N(1, p/(1-p)) (same variance)",
        [f"paired 95% CI of Gaussian - Bernoulli {'excludes' if d.hi < 0 or d.lo > 0 else 'includes'} 0"],
        {"panels": [{"title": "Test error", "ylabel": "test error (%)",
                     "bars": [bar("Bernoulli", b), bar("Gaussian", g)]}]},
    )


#: The findings of this module, as the registry holds them.
SPECS = [
    Spec(1, "Dropout vs no dropout on an over-parameterized MLP", SRIVASTAVA + ", Table 2",
         pub("MNIST test error, no augmentation: standard net 1.60%; dropout 3x1024 logistic "
              "1.35%, ReLU 1.25%; + max-norm 3x1024 1.06%, 2x8192 0.95% (S)",
              **{"standard net (%)": 1.60, "dropout 3x1024 logistic (%)": 1.35,
                 "dropout 3x1024 ReLU (%)": 1.25, "dropout + max-norm 3x1024 (%)": 1.06,
                 "dropout + max-norm 2x8192 (%)": 0.95}),
         "On each dataset that runs (MNIST-1D, Fashion-MNIST subset): dropout's mean test error is "
         "lower than no dropout's and the paired 95% CI of the difference (dropout - none) lies "
         "entirely below 0.",
         _measure_dropout_vs_none, 45),
    Spec(2, "Regularizer ladder", SRIVASTAVA + ", Table 9",
         pub("MNIST % error, 784-1024-1024-2048-10 ReLU, SGD: L2 1.62, L2+L1 1.60, L2+KL-sparsity "
              "1.55, max-norm 1.35, dropout+L2 1.25, dropout+max-norm 1.05 (S)",
              **{"L2": 1.62, "L2+L1": 1.60, "L2+KL-sparsity": 1.55, "max-norm": 1.35,
                 "dropout+L2": 1.25, "dropout+max-norm": 1.05}),
         "Each of the two dropout configurations (dropout+L2, dropout+max-norm) has a lower mean "
         "test error than each of the three without dropout (L2, L2+L1, max-norm).",
         _measure_regularizer_ladder, 27),
    Spec(3, "Dropout rate curve: n fixed vs p*n fixed", SRIVASTAVA + ", Fig. 9",
         pub("784-2048x3-10: error flat for retain probability 0.4-0.8, underfits when almost "
              "everything is dropped; keeping p*n fixed flattens the curve (S)"),
         "(a) With n fixed, the mean test error at the smallest retain probability is higher than "
         "the lowest mean error at retain probabilities in [0.4, 0.8]; (b) with p*n fixed, the "
         "spread of the curve (largest minus smallest mean error over the grid) is smaller than "
         "with n fixed.",
         _measure_rate_curve, 45),
    Spec(4, "Data set size: dropout's gain against N", SRIVASTAVA + ", Fig. 10",
         pub("no gain at 100-500 examples, gain grows then shrinks with N (S); "
              "N in {100, 500, 1k, 5k, 10k, 50k}"),
         "(a) At the smallest N the paired 95% CI of the gain (error without dropout minus error "
         "with) reaches 0 or lies below it; (b) the largest mean gain is at an interior N (it "
         "grows, then shrinks).",
         _measure_data_size, 50),
    Spec(5, "MC averaging vs weight scaling", SRIVASTAVA + ", Fig. 11",
         pub("MNIST: about 50 sampled nets to match weight scaling; beyond that within one "
              "std (S)", **{"sampled nets to match weight scaling": 50}),
         "MC averaging with T=1 has a higher mean test error than weight scaling, and at T=50 the "
         "MC error exceeds weight scaling's by at most one standard deviation (over seeds) of the "
         "paired difference.",
         _measure_mc_vs_weight_scaling, 10),
    Spec(6, "Bernoulli vs Gaussian dropout", SRIVASTAVA + ", Table 10",
         pub("2x1024: Bernoulli 1.08 +- 0.04 % vs Gaussian 0.95 +- 0.04 % test error (S)",
              **{"Bernoulli (%)": 1.08, "Gaussian (%)": 0.95, "+- (%)": 0.04}),
         "Gaussian dropout's mean test error is no higher than Bernoulli dropout's at the same "
         "variance: the mean paired difference (Gaussian - Bernoulli) is <= 0.",
         _measure_bernoulli_vs_gaussian, 25),
]
