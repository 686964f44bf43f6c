"""Findings 10-12: dropout beside the training recipe -- Prechelt's early-stopping criteria (10),
robustness to input and label noise (11) and decoupled weight decay (12)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

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
    train_config,
    txt,
)
from droplab.reproduce._train import Arm, load, train_group
from droplab.reproduce.registry import Context, Outcome, Spec, pub
from droplab.train import EarlyStopping

__all__ = ["SPECS"]


# --- 10. early stopping --------------------------------------------------------------------------
_CRITERIA = ("patience", "gl", "pq", "up")
_CRITERION_LABEL = {"patience": "patience 10", "gl": "GL5", "pq": "PQ3", "up": "UP4"}


class _Run:
    """What EarlyStopping sees as its trainer when a criterion is replayed on recorded epochs."""

    def __init__(self) -> None:
        self.should_stop = False
        self.stop_reason: str | None = None
        self.model = None


def _replay(criterion: str, rows: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """(stop epoch, restored epoch) of ``criterion`` on a run's recorded epoch rows."""
    es = EarlyStopping(criterion=criterion, restore_best_weights=False)
    run = _Run()
    es.on_fit_start(run)
    for row in rows:
        es.on_epoch_end(run, epoch=row["epoch"], logs=row)
        if run.should_stop:
            break
    stop = es.stopped_epoch_ if es.stopped_epoch_ is not None else rows[-1]["epoch"]
    return stop, es.best_epoch_ if es.best_epoch_ is not None else stop


def _measure_early_stopping(ctx: Context) -> Outcome:
    """Prechelt's GL, PQ and UP criteria against patience (Prechelt 1998)."""
    splits = load_mnist1d(ctx)
    budget = ctx.pick(6, 60, 120)
    cfg = train_config(ctx, budget)
    curves: dict[int, list[float]] = {}

    def record(pop, rows) -> None:
        acc = pop.evaluate(splits.x_test, splits.y_test)["acc"]
        for i, a in zip(pop.rows, acc):
            curves.setdefault(pop.members[i].seed, []).append(100 * (1 - a))

    res = train_group(ctx, splits, mlp_spec(HIDDEN), [Arm("none", cfg, (0.0, 0.0))],
                      validation=True, on_epoch=record)
    stops: dict[str, dict[int, float]] = {c: {} for c in _CRITERIA}
    errs: dict[str, dict[int, float]] = {c: {} for c in _CRITERIA}
    secs: dict[str, dict[int, float]] = {c: {} for c in _CRITERIA}
    restored: dict[tuple[str, int], int] = {}
    for s in ctx.seeds:
        rows = res.history[("none", s)]
        for c in _CRITERIA:
            stop, best = _replay(c, rows)
            restored[(c, s)] = best
            stops[c][s] = stop
            errs[c][s] = curves[s][best - 1]
            secs[c][s] = sum(r["seconds"] for r in rows[:stop])
    same = all(len({restored[(c, s)] for c in _CRITERIA}) == 1 for s in ctx.seeds)
    e_stop = {c: est(stops[c]) for c in _CRITERIA}
    e_err = {c: est(errs[c]) for c in _CRITERIA}
    e_sec = {c: est(secs[c]) for c in _CRITERIA}
    latest = max(_CRITERIA, key=lambda c: e_stop[c].mean)
    earliest = min(_CRITERIA, key=lambda c: e_stop[c].mean)
    agrees = e_err[latest].mean <= e_err[earliest].mean
    values = {}
    for c in _CRITERIA:
        lab = _CRITERION_LABEL[c]
        values[f"{lab} stop epoch"] = e_stop[c].to_dict()
        values[f"{lab} test error"] = e_err[c].to_dict()
        values[f"{lab} training seconds"] = e_sec[c].to_dict()
    ratio_t = e_sec[latest].mean / e_sec[earliest].mean if e_sec[earliest].mean > 0 else math.nan
    ratio_e = (e_err[earliest].mean - e_err[latest].mean) / e_err[earliest].mean * 100
    return Outcome(
        "; ".join(f"{_CRITERION_LABEL[c]}: stop epoch {fmt(e_stop[c].mean)}, test error "
                  f"{txt(e_err[c])}, {fmt(e_sec[c].mean, 2)} s" for c in _CRITERIA),
        values, agrees,
        setting_mlp(ctx, splits, epochs=budget) + "; no dropout; val loss monitored (400 "
        "validation examples); strips k = 5; the best-validation weights restored",
        [f"latest to stop: {_CRITERION_LABEL[latest]}, earliest: {_CRITERION_LABEL[earliest]}; "
         f"the later one's error is {fmt(ratio_e)}% {'lower' if ratio_e >= 0 else 'higher'} "
         f"(relative) for {fmt(ratio_t)}x the training time",
         "criteria replayed on the recorded epochs of the same runs: a run's epochs up to its stop "
         "do not depend on the criterion, so this equals stopping each run live"]
        + (["every criterion restored the same (best-validation-loss) epoch in every run, so "
            "their test errors tie: the later stops bought nothing here"] if same else []),
        {"panels": [{"title": "Stop epoch", "ylabel": "epoch",
                     "bars": [bar(_CRITERION_LABEL[c], e_stop[c]) for c in _CRITERIA]},
                    {"title": "Test error at the restored weights", "ylabel": "test error (%)",
                     "bars": [bar(_CRITERION_LABEL[c], e_err[c]) for c in _CRITERIA]}]},
    )


# --- 11. robustness -----------------------------------------------------------------------------
def _measure_robustness(ctx: Context) -> Outcome:
    """Accuracy under input noise and label noise, with and without dropout."""
    from droplab.inference import accuracy_under_noise

    splits = load_mnist1d(ctx)
    cfg = train_config(ctx, mlp_epochs(ctx))
    arms = [Arm("none", cfg, (0.0, 0.0)), Arm("dropout", cfg, (DROP, DROP))]
    clean = train_group(ctx, splits, mlp_spec(HIDDEN), arms, span=(0.0, 0.45), keep_models=True)
    levels = (0.0, 0.5, 1.0)
    acc: dict[str, dict[float, dict[int, float]]] = {a.key: {lv: {} for lv in levels} for a in arms}
    for a in arms:
        for s in ctx.seeds:
            for r in accuracy_under_noise(clean.model(a.key, s), splits.x_test, splits.y_test,
                                          levels=levels, seed=s):
                acc[a.key][r["level"]][s] = 100 * r["acc"]
    ctx.advance(0.5)
    noise = 0.4
    noisy_splits = load(ctx, "mnist1d", subsample=ctx.pick(200, 1000, 1000), label_noise=noise)
    noisy = train_group(ctx, noisy_splits, mlp_spec(HIDDEN), arms, span=(0.5, 1.0))
    lost = {k: {s: acc[k][0.0][s] - acc[k][1.0][s] for s in ctx.seeds} for k in acc}
    d_lost = diff(lost["dropout"], lost["none"])
    noisy_acc = {k: {s: 100 - v for s, v in noisy.errors(k).items()} for k in ("none", "dropout")}
    d_label = diff(noisy_acc["dropout"], noisy_acc["none"])
    a, b = d_lost.mean < 0, d_label.mean > 0
    values = {}
    for k in ("none", "dropout"):
        for lv in levels:
            values[f"{k} accuracy, input noise {lv:g}"] = est(acc[k][lv]).to_dict()
        values[f"{k} accuracy lost to noise 1.0"] = est(lost[k]).to_dict()
        values[f"{k} accuracy, {noise:.0%} label noise"] = est(noisy_acc[k]).to_dict()
    values["dropout - none, accuracy lost to input noise"] = d_lost.to_dict()
    values["dropout - none, accuracy with label noise"] = d_label.to_dict()
    return Outcome(
        f"accuracy lost to input noise (std 1): none {txt(est(lost['none']), ' pts')}, dropout "
        f"{txt(est(lost['dropout']), ' pts')}; with {noise:.0%} label noise: none "
        f"{txt(est(noisy_acc['none']))}, dropout {txt(est(noisy_acc['dropout']))}",
        values, a and b,
        setting_mlp(ctx, splits) + f"; dropout: hidden {DROP}; input noise: Gaussian, std in "
        f"standardized units, on the test inputs (one draw per seed); label noise: {noise:.0%} of "
        f"the training labels replaced by another class",
        [f"(a) dropout loses less accuracy to input noise: {'yes' if a else 'no'} "
         f"({txt(d_lost, ' pts', signed=True)})",
         f"(b) dropout is more accurate with noisy labels: {'yes' if b else 'no'} "
         f"({txt(d_label, ' pts', signed=True)})"],
        {"panels": [{"title": "Accuracy under input noise", "xlabel": "noise std",
                     "ylabel": "test accuracy (%)",
                     "lines": [line(k if k == "dropout" else "no dropout", levels,
                                     [est(acc[k][lv]) for lv in levels]) for k in ("none", "dropout")]},
                    {"title": f"Accuracy, {noise:.0%} label noise", "ylabel": "test accuracy (%)",
                     "bars": [bar("no dropout", est(noisy_acc["none"])),
                              bar("dropout", est(noisy_acc["dropout"]))]}]},
    )


# --- 12. weight decay ---------------------------------------------------------------------------
def _measure_weight_decay(ctx: Context) -> Outcome:
    """AdamW's decoupled decay vs Adam + L2 over lr x decay (Loshchilov & Hutter 2019)."""
    splits = load_mnist1d(ctx)
    lrs = ctx.pick((1e-2,), (3e-3, 1e-2), (1e-3, 3e-3, 1e-2))
    l2s = ctx.pick((1e-4,), (1e-5, 1e-4, 1e-3), (1e-6, 1e-5, 1e-4, 1e-3))
    wds = ctx.pick((0.1,), (0.01, 0.1, 1.0), (0.001, 0.01, 0.1, 1.0))
    epochs = ctx.pick(2, 60, 120)  # no dropout: converged after about 45 epochs
    adam = [Arm(f"adam lr={lr:g} l2={l2:g}", train_config(ctx, epochs, lr=lr, l2=l2), (0.0, 0.0))
            for lr in lrs for l2 in l2s]
    adamw = [Arm(f"adamw lr={lr:g} wd={wd:g}",
                 train_config(ctx, epochs, optimizer="adamw", lr=lr, weight_decay=wd), (0.0, 0.0))
             for lr in lrs for wd in wds]
    r1 = train_group(ctx, splits, mlp_spec(HIDDEN), adam, span=(0.0, 0.5))
    r2 = train_group(ctx, splits, mlp_spec(HIDDEN), adamw, span=(0.5, 1.0))
    e = {a.key: est(r1.errors(a.key)) for a in adam}
    e.update({a.key: est(r2.errors(a.key)) for a in adamw})
    best_adam = min((a.key for a in adam), key=lambda k: e[k].mean)
    best_adamw = min((a.key for a in adamw), key=lambda k: e[k].mean)
    agrees = e[best_adamw].mean < e[best_adam].mean
    panels = []
    for title, grid, prefix, name in (("Adam + L2 penalty", l2s, "adam", "l2"),
                                      ("AdamW (decoupled)", wds, "adamw", "wd")):
        panels.append({"title": title, "xlabel": f"{name} (decay)", "ylabel": "test error (%)",
                       "xlog": True,
                       "lines": [line(f"lr {lr:g}", grid, [e[f"{prefix} lr={lr:g} {name}={v:g}"] for v in grid])
                                 for lr in lrs]})
    return Outcome(
        f"best Adam+L2: {best_adam} {txt(e[best_adam])}; best AdamW: {best_adamw} {txt(e[best_adamw])}",
        {k: v.to_dict() for k, v in e.items()},
        agrees,
        setting_mlp(ctx, splits, epochs=epochs) + f"; no dropout; grid lr {list(lrs)} x L2 "
        f"{list(l2s)} (Adam, loss += l2*sum w^2) or decay {list(wds)} (AdamW, torch's convention "
        f"theta -= lr*wd*theta, weights only)",
        [f"{len(lrs) * len(l2s)} Adam+L2 and {len(lrs) * len(wds)} AdamW configurations; the best of "
         f"each grid is compared (selected on the test split it is reported on, the same for both)"],
        {"panels": panels},
    )


#: The findings of this module, as the registry holds them.
SPECS = [
    Spec(10, "Early stopping: Prechelt's GL/PQ/UP vs patience",
         "Prechelt, \"Early Stopping - but when?\", Neural Networks: Tricks of the Trade, LNCS "
         "1524, 1998",
         pub("strip length k = 5; GL(t) = 100*(E_va/E_opt - 1); PQ: GL/P_k > alpha; UP_s: "
              "validation error rose at s successive strip ends. Slower criteria: about 4% better "
              "generalization for about 4x the training time (1296 runs)",
              **{"generalization gain of slower criteria (%)": 4, "training time ratio": 4,
                 "runs": 1296}),
         "The criterion that stops latest (mean stop epoch) reaches a mean test error no higher "
         "than the criterion that stops earliest.",
         _measure_early_stopping, 6),
    Spec(11, "Robustness to input noise and label noise",
         SRIVASTAVA + "; Arpit et al., \"A Closer Look at Memorization in Deep Networks\", ICML "
         "2017, arXiv:1706.05394",
         pub("dropout trains with multiplicative noise on hidden units; nets trained with it are "
              "expected to degrade less under input corruption and to memorize noisy labels less "
              "(no figure recorded in ANCHORS.md)"),
         "(a) The test accuracy lost to Gaussian input noise of std 1 (clean minus noisy, paired "
         "by seed) is smaller with dropout; (b) trained with 40% of the training labels replaced, "
         "dropout's mean test accuracy is higher than no dropout's.",
         _measure_robustness, 20),
    Spec(12, "Weight decay: AdamW vs Adam + L2 over lr x decay",
         "Loshchilov, Hutter, \"Decoupled Weight Decay Regularization\", ICLR 2019, "
         "arXiv:1711.05101",
         pub("decoupled decay theta -= eta*(adam_step + lambda*theta) instead of an L2 term in "
              "the loss; droplab (like torch) multiplies the decay by the learning rate: theta -= "
              "lr*lambda*theta (no figure recorded in ANCHORS.md)"),
         "The best mean test error over the lr x decay grid is lower with AdamW (decoupled decay) "
         "than with Adam and an L2 penalty.",
         _measure_weight_decay, 30),
]
