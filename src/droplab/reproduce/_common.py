"""Measurement helpers the findings share: estimates over seeds, paired differences, the text
and figure records, and the MNIST-1D MLP recipe.

Intervals are 95% intervals over seeds under droplab's decision rule
(:func:`droplab.stats.resolve_stat`: Student-t with few seeds, studentized bootstrap from 6 on);
differences between arms are paired by seed (:func:`droplab.stats.paired_difference`): runs
with one seed share initialization, data order and, in MLPs, the dropout uniforms.

Recipe (chosen before any result was seen): MNIST-1D models train with the dataset's reference
recipe (Adam, lr 1e-2, batch 100) on a 1000-example subset, the same for every seed (data seed
0), so that a 128x2 MLP is heavily over-parameterized; "dropout" means 50% of the hidden units
(Srivastava et al.'s recommendation).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from droplab.models import ModelSpec
from droplab.reproduce._train import load
from droplab.reproduce.registry import Context
from droplab.stats import Estimate, interval, paired_difference, resolve_stat
from droplab.train import TrainConfig


SRIVASTAVA = ("Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov, \"Dropout: A Simple Way "
               "to Prevent Neural Networks from Overfitting\", JMLR 15, 2014")


@dataclasses.dataclass(frozen=True)
class Est(Estimate):
    """An :class:`~droplab.sweep.Estimate` that keeps the per-seed values it summarizes."""

    per_seed: dict[int, float] = dataclasses.field(default_factory=dict)


def est(values: Mapping[int, float]) -> Est:
    """Mean and 95% interval over seeds of ``{seed: value}`` (droplab's rule: :func:`droplab.stats.resolve_stat`)."""
    e = interval(list(values.values()), resolve_stat(None, len(values)))
    return Est(**dataclasses.asdict(e), per_seed={int(k): float(v) for k, v in values.items()})


def diff(a: Mapping[int, float], b: Mapping[int, float]) -> Est:
    """Paired by seed: mean and 95% interval of ``a[s] - b[s]`` over the seeds both have.

    The interval is the rule's (:func:`droplab.stats.resolve_stat`: t below 6 seeds, studentized
    bootstrap from 6); each verdict is one comparison, so there is no family to correct.
    """
    n = sum(1 for s in a if s in b)
    e = paired_difference(dict(a), dict(b), method=resolve_stat(None, n))
    per_seed = {int(s): float(a[s] - b[s]) for s in a if s in b}
    return Est(**dataclasses.asdict(e), per_seed=per_seed)


def fmt(x: float, digits: int = 1) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.{digits}f}"


def txt(e: Estimate, unit: str = "%", digits: int = 1, signed: bool = False) -> str:
    """``"48.7% [46.1, 51.2]"`` (the bracket is the 95% CI; absent with one seed)."""
    sign = "+" if signed and math.isfinite(e.mean) and e.mean >= 0 else ""
    ci = f" [{fmt(e.lo, digits)}, {fmt(e.hi, digits)}]" if math.isfinite(e.lo) else ""
    return f"{sign}{fmt(e.mean, digits)}{unit}{ci}"


def line(label: str, xs: Sequence[float], ests: Sequence[Estimate]) -> dict[str, Any]:
    return {
        "label": label,
        "x": list(xs),
        "mean": [e.mean for e in ests],
        "lo": [e.lo for e in ests],
        "hi": [e.hi for e in ests],
    }


def bar(label: str, e: Estimate) -> dict[str, Any]:
    return {"label": label, "mean": e.mean, "lo": e.lo, "hi": e.hi}


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    if len(xs) < 2 or len(set(ys)) < 2 or len(set(xs)) < 2:
        return math.nan
    return float(spearmanr(xs, ys).statistic)


def mlp_spec(hidden: Sequence[int], places: Sequence[str] = ("hidden",)) -> ModelSpec:
    """An MLP spec with zero-rate dropout entries at ``places`` (arms bring their rates)."""
    return ModelSpec(kind="mlp", hidden=tuple(hidden), dropout={p: 0.0 for p in places})


def train_config(ctx: Context, epochs: int, **changes: Any) -> TrainConfig:
    """MNIST-1D's reference recipe: Adam, lr 1e-2, batch 100 (CPU, no train-set evaluation)."""
    base = dict(optimizer="adam", lr=1e-2, batch_size=100, epochs=epochs, eval_train=False,
                device="cpu")
    base.update(changes)
    return TrainConfig(**base)


def load_mnist1d(ctx: Context, **options: Any):
    return load(ctx, "mnist1d", subsample=ctx.pick(200, 1000, 1000), **options)


HIDDEN = (128, 128)
DROP = 0.5  # Srivastava et al.'s hidden rate


def mlp_epochs(ctx: Context) -> int:
    # The 128x2 MLP without dropout converges in about 45 epochs of 10 steps on 1000 MNIST-1D
    # examples; dropout nets train 2-3x longer (Srivastava et al., Appendix A), hence 100.
    return ctx.pick(2, 100, 200)


def setting_mlp(ctx: Context, splits, hidden=HIDDEN, epochs=None, lr=1e-2) -> str:
    epochs = epochs or mlp_epochs(ctx)
    return (
        f"{splits.name}: {len(splits.x_train)} training examples, {len(splits.x_test)} test; "
        f"MLP {'-'.join(str(h) for h in (math.prod(splits.input_shape), *hidden, splits.n_outputs))} "
        f"ReLU; Adam lr {lr:g}, batch 100, {epochs} epochs, final weights; "
        f"{len(ctx.seeds)} seeds"
    )
