"""Findings 13-16: dropout over time and depth (early/late dropout, R-Drop, LayerDrop).

Same format and rules as findings 1-12 (:mod:`droplab.reproduce.registry`): each criterion is fixed
here, in code, before anything runs; intervals are 95% Student-t intervals over seeds, and
differences between arms are paired by seed (same initialization and data order; the MLP arms of
one seed also share their dropout uniforms).

Recipes (chosen before any result was seen):

- 13 and 14 use MNIST-1D MLPs with the dataset's reference recipe (Adam, lr 1e-2, batch 100).
  The *underfitting* model of 13 is a 40-32-10 MLP on all 3600 training examples (its training
  and test accuracy stay close); the *overfitting* model of 14 is finding 1's 128x2 MLP on a
  1000-example subset. Early and late dropout switch at a quarter of the epochs; the rates are
  Liu et al.'s 0.1 for the underfitting model and Srivastava et al.'s 0.5 for the overfitting one.
- 15 and 16 use the text transformer example's task (:mod:`droplab.data.pydoc_topics`: which of
  eight pydoc topics a 32-token passage comes from) and model (droplab's pre-LN Transformer with
  token embedding), Adam lr 2e-3, batch 64, trained one run at a time with the Trainer.
"""

from __future__ import annotations

from typing import Any

import torch

from droplab.models import ModelSpec, parse_dropout, prune
from droplab.reproduce._common import bar, diff, est, mlp_spec, train_config, txt
from droplab.reproduce._train import Arm, Skip, load, train_group
from droplab.reproduce.registry import Context, Outcome, Spec, pub

__all__ = ["SPECS"]


# --- 13. early dropout on an underfitting model ----------------------------------------------------
def _measure_early_underfit(ctx: Context) -> Outcome:
    """Early dropout lowers the final training loss of an underfitting MLP (Liu et al. 2023)."""
    splits = load(ctx, "mnist1d", subsample=ctx.pick(400, None, None))
    epochs = ctx.pick(4, 40, 80)
    switch = epochs // 4
    p = 0.1
    hidden = (32,)
    cfg = train_config(ctx, epochs, eval_train=True)
    arms = [
        Arm("none", cfg, (0.0,)),
        Arm("early", cfg, (p,), schedules=(f"early@{switch}",)),
        Arm("standard", cfg, (p,)),
    ]
    res = train_group(ctx, splits, mlp_spec(hidden), arms)
    loss = {a.key: {s: res.history[(a.key, s)][-1]["train_eval_loss"] for s in ctx.seeds} for a in arms}
    err = {a.key: res.errors(a.key) for a in arms}
    e_loss = {k: est(v) for k, v in loss.items()}
    e_err = {k: est(v) for k, v in err.items()}
    d_loss = diff(loss["early"], loss["none"])
    d_err = diff(err["early"], err["none"])
    train_acc_gap = {
        s: 100 * res.history[("none", s)][-1]["train_eval_acc"] - (100 - err["none"][s]) for s in ctx.seeds
    }
    a_ok = d_loss.mean < 0
    b_ok = not (d_err.lo > 0)  # the interval does not lie entirely above 0
    values = {f"{k} final training loss": e.to_dict() for k, e in e_loss.items()}
    values.update({f"{k} test error": e.to_dict() for k, e in e_err.items()})
    values["early - none training loss"] = d_loss.to_dict()
    values["early - none test error"] = d_err.to_dict()
    values["no dropout: training minus test accuracy"] = est(train_acc_gap).to_dict()
    return Outcome(
        f"final training loss: none {txt(e_loss['none'], '', 3)}, early {txt(e_loss['early'], '', 3)}, "
        f"standard {txt(e_loss['standard'], '', 3)}; early - none {txt(d_loss, '', 3, signed=True)}; "
        f"test error: none {txt(e_err['none'])}, early {txt(e_err['early'])}, standard "
        f"{txt(e_err['standard'])}; early - none {txt(d_err, ' pts', signed=True)}",
        values, a_ok and b_ok,
        f"mnist1d: {len(splits.x_train)} training examples, {len(splits.x_test)} test; MLP "
        f"40-{hidden[0]}-10 ReLU (underfitting: no-dropout training accuracy exceeds test accuracy by "
        f"{txt(est(train_acc_gap), ' pts')}); Adam lr 0.01, batch 100, {epochs} epochs, final "
        f"weights; early dropout: hidden p={p} for the first {switch} epochs, then 0; standard: "
        f"p={p} throughout; {len(ctx.seeds)} seeds",
        [f"(a) early lowers the final training loss: {'yes' if a_ok else 'no'}",
         f"(b) early does not hurt test error (paired CI not above 0): {'yes' if b_ok else 'no'}",
         "training loss is the eval-mode cross-entropy on the whole training split after the last epoch"],
        {"panels": [
            {"title": "Final training loss", "ylabel": "cross-entropy",
             "bars": [bar(k, e) for k, e in e_loss.items()]},
            {"title": "Test error", "ylabel": "test error (%)",
             "bars": [bar(k, e) for k, e in e_err.items()]},
        ]},
    )


# --- 14. late / standard dropout on an overfitting model -------------------------------------------
def _measure_late_overfit(ctx: Context) -> Outcome:
    """Standard or late dropout, not early, helps an overfitting MLP (Liu et al. 2023)."""
    splits = load(ctx, "mnist1d", subsample=ctx.pick(200, 1000, 1000))
    epochs = ctx.pick(4, 60, 120)
    switch = epochs // 4
    p = 0.5
    hidden = (128, 128)
    cfg = train_config(ctx, epochs)
    arms = [
        Arm("none", cfg, (0.0, 0.0)),
        Arm("early", cfg, (p, p), schedules=(f"early@{switch}",) * 2),
        Arm("late", cfg, (p, p), schedules=(f"late@{switch}",) * 2),
        Arm("standard", cfg, (p, p)),
    ]
    res = train_group(ctx, splits, mlp_spec(hidden), arms)
    err = {a.key: res.errors(a.key) for a in arms}
    e = {k: est(v) for k, v in err.items()}
    d = {k: diff(err[k], err["none"]) for k in ("early", "late", "standard")}
    helps = [k for k in ("standard", "late") if d[k].mean < 0 and d[k].hi < 0]
    best = min(("standard", "late"), key=lambda k: e[k].mean)
    a_ok = bool(helps)
    b_ok = e["early"].mean > e[best].mean
    values = {f"{k} test error": v.to_dict() for k, v in e.items()}
    values.update({f"{k} - none": v.to_dict() for k, v in d.items()})
    return Outcome(
        "test error: " + ", ".join(f"{k} {txt(v)}" for k, v in e.items())
        + "; minus none: " + ", ".join(f"{k} {txt(v, ' pts', signed=True)}" for k, v in d.items()),
        values, a_ok and b_ok,
        f"mnist1d: {len(splits.x_train)} training examples, {len(splits.x_test)} test; MLP "
        f"40-128-128-10 ReLU (overfitting); Adam lr 0.01, batch 100, {epochs} epochs, final weights; "
        f"hidden dropout p={p}: early = first {switch} epochs only, late = from epoch {switch + 1} on, "
        f"standard = throughout; {len(ctx.seeds)} seeds",
        [f"(a) arms whose paired CI against none lies below 0: {', '.join(helps) or 'none'}",
         f"(b) early's mean error above the better of standard and late ({best}): "
         f"{'yes' if b_ok else 'no'}"],
        {"panels": [{"title": "Test error", "ylabel": "test error (%)",
                     "bars": [bar(k, v) for k, v in e.items()]}]},
    )


# --- text transformer helpers ------------------------------------------------------------------------
def _topics(ctx: Context):
    """The pydoc topics task as :class:`~droplab.data.Splits` (cached in the context)."""
    from droplab.data import Splits
    from droplab.data.pydoc_topics import load_topics
    from droplab.errors import DataError

    key = ("pydoc_topics", ctx.size)
    if key in ctx.cache:
        return ctx.cache[key]
    try:
        data, vocab, names = load_topics(32, ctx.pick(2600, None, None))
    except DataError as exc:
        raise Skip(str(exc)) from None

    splits = Splits("pydoc topics", "classification", *data["train"], *data["val"], *data["test"],
                    len(names), (32,))
    ctx.cache[key] = (splits, vocab)
    return ctx.cache[key]


def _text_spec(vocab: int, layers: int, dropout: str) -> ModelSpec:
    return ModelSpec(kind="transformer", hidden=(32,), heads=4, layers=layers, ff_dim=64,
                     vocab_size=vocab, dropout=parse_dropout(dropout))


def _text_train(ctx: Context, epochs: int, **changes: Any):
    return train_config(ctx, epochs, lr=2e-3, batch_size=64, **changes)


def _text_setting(ctx: Context, splits, layers: int, epochs: int) -> str:
    return (f"pydoc topics (8 classes, 32-token passages): {len(splits.x_train)} training, "
            f"{len(splits.x_test)} test passages; Transformer d_model 32, 4 heads, {layers} blocks, "
            f"ff 64, mean readout; Adam lr 0.002, batch 64, {epochs} epochs, final weights; "
            f"{len(ctx.seeds)} seeds")


# --- 15. R-Drop --------------------------------------------------------------------------------------
_TEXT_DROPOUT = "attention=0.1,hidden=0.1"


def _measure_rdrop(ctx: Context) -> Outcome:
    """R-Drop against plain dropout on the text transformer (Liang et al. 2021)."""
    splits, vocab = _topics(ctx)
    epochs = ctx.pick(1, 4, 10)
    alpha = 1.0
    spec = _text_spec(vocab, 2, _TEXT_DROPOUT)
    arms = [Arm("dropout", _text_train(ctx, epochs)), Arm("R-Drop", _text_train(ctx, epochs, rdrop=alpha))]
    res = train_group(ctx, splits, spec, arms, engine="trainer")
    err = {a.key: res.errors(a.key) for a in arms}
    e = {k: est(v) for k, v in err.items()}
    d = diff(err["R-Drop"], err["dropout"])
    secs = {a.key: {s: sum(r["seconds"] for r in res.history[(a.key, s)]) for s in ctx.seeds} for a in arms}
    ratio = est({s: secs["R-Drop"][s] / secs["dropout"][s] for s in ctx.seeds})
    values = {f"{k} test error": v.to_dict() for k, v in e.items()}
    values["R-Drop - dropout"] = d.to_dict()
    values["R-Drop / dropout training seconds"] = ratio.to_dict()
    return Outcome(
        f"test error: dropout {txt(e['dropout'])}, R-Drop {txt(e['R-Drop'])}; R-Drop - dropout "
        f"{txt(d, ' pts', signed=True)}; cost: R-Drop trains {txt(ratio, 'x', 2)} as long",
        values, d.mean < 0,
        _text_setting(ctx, splits, 2, epochs) + f"; dropout {_TEXT_DROPOUT} in both arms; R-Drop "
        f"alpha={alpha} (two passes per step, symmetric KL)",
        [f"paired 95% CI of R-Drop - dropout {'excludes' if d.hi < 0 or d.lo > 0 else 'includes'} 0",
         "cost: training seconds summed over epochs, per seed, R-Drop over plain dropout"],
        {"panels": [{"title": "Text transformer test error", "ylabel": "test error (%)",
                     "bars": [bar(k, v) for k, v in e.items()]}]},
    )


# --- 16. LayerDrop and pruning -------------------------------------------------------------------------
def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(xb).argmax(1) for xb in x.split(500)])
    return float((pred == y).float().mean())


def _measure_layerdrop(ctx: Context) -> Outcome:
    """A LayerDrop transformer pruned to half its blocks against a standard one (Fan et al. 2020)."""
    splits, vocab = _topics(ctx)
    epochs = ctx.pick(1, 5, 12)
    layers, rate = 4, 0.2
    cfg = _text_train(ctx, epochs)
    specs = {
        "standard": _text_spec(vocab, layers, _TEXT_DROPOUT),
        "LayerDrop": _text_spec(vocab, layers, _TEXT_DROPOUT + f",block={rate}"),
    }
    acc: dict[str, dict[int, float]] = {}
    for i, (name, spec) in enumerate(specs.items()):
        res = train_group(ctx, splits, spec, [Arm(name, cfg)], span=(i / 2, (i + 1) / 2),
                          engine="trainer", keep_models=True)
        acc[f"{name} full"] = {s: 100 * (1 - res.errors(name)[s] / 100) for s in ctx.seeds}
        acc[f"{name} pruned"] = {
            s: 100 * _accuracy(prune(res.model(name, s), layers // 2), splits.x_test, splits.y_test)
            for s in ctx.seeds
        }
    e = {k: est(v) for k, v in acc.items()}
    d = diff(acc["LayerDrop pruned"], acc["standard pruned"])
    drop = {n: diff(acc[f"{n} full"], acc[f"{n} pruned"]) for n in specs}
    ok = d.mean > 0 and d.lo > 0 and drop["LayerDrop"].mean < drop["standard"].mean
    values = {f"{k} test accuracy": v.to_dict() for k, v in e.items()}
    values["LayerDrop pruned - standard pruned"] = d.to_dict()
    values.update({f"{n} accuracy lost by pruning": v.to_dict() for n, v in drop.items()})
    return Outcome(
        "test accuracy full -> pruned to every other block: "
        + ", ".join(f"{n} {txt(e[f'{n} full'])} -> {txt(e[f'{n} pruned'])}" for n in specs)
        + f"; pruned LayerDrop - pruned standard {txt(d, ' pts', signed=True)}",
        values, ok,
        _text_setting(ctx, splits, layers, epochs) + f"; dropout {_TEXT_DROPOUT} in both; LayerDrop "
        f"p={rate} on each block; pruned with droplab.models.prune(model, keep={layers // 2}) "
        f"(blocks 0 and 2), no fine-tuning",
        [f"pruning costs LayerDrop {txt(drop['LayerDrop'], ' pts')} and standard "
         f"{txt(drop['standard'], ' pts')} of accuracy",
         f"paired 95% CI of pruned LayerDrop - pruned standard "
         f"{'lies above' if d.lo > 0 else 'reaches'} 0"],
        {"panels": [{"title": "Test accuracy, full and pruned to half", "ylabel": "test accuracy (%)",
                     "bars": [bar(k.replace(' ', '\n'), v) for k, v in e.items()]}]},
    )


_LIU = ("Liu, Xu, Jin, Shen, Darrell, \"Dropout Reduces Underfitting\", ICML 2023, "
        "arXiv:2303.01500")

#: The findings of this module, as the registry holds them.
SPECS = [
    Spec(13, "Early dropout lowers the training loss of an underfitting model", _LIU,
         pub("ImageNet ViT-T: no dropout 73.9, standard dropout 67.9, early dropout 74.3, early "
              "stochastic depth 74.4 top-1 (%); early dropout lowers the final training loss of "
              "underfitting models",
              **{"ViT-T no dropout (%)": 73.9, "ViT-T standard dropout (%)": 67.9,
                 "ViT-T early dropout (%)": 74.3, "ViT-T early stochastic depth (%)": 74.4}),
         "(a) Early dropout's mean final training loss (eval mode, whole training split) is lower "
         "than no dropout's (mean paired difference < 0); (b) early dropout does not hurt test "
         "accuracy: the paired 95% CI of the test error difference (early - none) does not lie "
         "entirely above 0.",
         _measure_early_underfit, 15),
    Spec(14, "Standard or late dropout, not early, helps an overfitting model", _LIU,
         pub("late stochastic depth on ViT-B: 81.6 -> 82.3 top-1 (%); for overfitting models "
              "standard or late dropout helps, early dropout does not",
              **{"ViT-B top-1 (%)": 81.6, "ViT-B late stochastic depth top-1 (%)": 82.3}),
         "(a) Standard or late dropout (either suffices) has a lower mean test error than no "
         "dropout with the paired 95% CI of the difference entirely below 0; (b) early dropout's "
         "mean test error is higher than the lower of standard's and late's.",
         _measure_late_overfit, 15),
    Spec(15, "R-Drop vs plain dropout on a small text transformer",
         "Liang, Wu, Li, Wang, Meng, Qin, Chen, Zhang, Liu, \"R-Drop: Regularized Dropout for "
         "Neural Networks\", NeurIPS 2021, arXiv:2106.14448",
         pub("two forward passes with different dropout masks; loss = CE of both + alpha * "
              "symmetric KL; WMT14 En-De 30.91 BLEU", **{"WMT14 En-De BLEU": 30.91}),
         "R-Drop (alpha = 1) has a lower mean test error than plain dropout at the same rates "
         "(mean paired difference R-Drop - dropout < 0); its cost is reported, not judged.",
         _measure_rdrop, 110),
    Spec(16, "LayerDrop: a transformer pruned to half its layers",
         "Fan, Grave, Joulin, \"Reducing Transformer Depth on Demand with Structured Dropout\", "
         "ICLR 2020, arXiv:1909.11556",
         pub("drop whole transformer layers in training (rate 0.2); at inference prune to a "
              "sub-depth (every other layer) without fine-tuning (no figure recorded in "
              "ANCHORS.md)", **{"LayerDrop rate": 0.2}),
         "Pruned to every other block, the LayerDrop-trained transformer has a higher mean test "
         "accuracy than the standard one pruned the same way, with the paired 95% CI of the "
         "difference entirely above 0, and it loses less accuracy to pruning (mean full - pruned "
         "smaller).",
         _measure_layerdrop, 130),
]
