"""The published findings on dropout, rerun offline at a small scale, one function each.

Every finding has a :class:`Spec` -- number, name, citation, the published text and numbers
(from ``ANCHORS.md``, ``(S)`` marks kept: confirmed only through agreeing secondary copies), and
the *criterion*: the exact test of the published shape that decides ``agrees``, fixed here,
in code, before anything runs. Its function trains what the finding needs with every seed of
the run, measures, applies the criterion to the measurements and returns a :class:`Finding`.
A disagreement is returned as such; nothing is retried or tuned.

Absolute MNIST/ImageNet numbers cannot be rerun offline: the findings reproduce the *shape*
on MNIST-1D (Greydanus 2020, arXiv:2011.14439; a 1000-example training subset, so that a
128x2 MLP is heavily over-parameterized), Fashion-MNIST (Xiao et al. 2017, arXiv:1708.07747)
and a synthetic sine regression. Intervals are 95% intervals over seeds under droplab's decision
rule (:func:`droplab.stats.resolve_stat`: Student-t with few seeds, studentized bootstrap from 6
on; each finding's notes name it); differences between arms are paired by seed
(:func:`droplab.sweep.paired_difference`): runs with one seed share initialization, data order
and, in MLPs, the dropout uniforms. The training subset is the same for every seed (data seed
0), so the intervals cover initialization, data order and masks, not the draw of the data.

Recipes (chosen before any result was seen): MNIST-1D models train with the dataset's reference
recipe (Adam, lr 1e-2, batch 100); Fashion-MNIST MLPs with Adam at torch's default lr 1e-3.
"Dropout" means 50% of the hidden units (Srivastava et al.'s recommendation); input dropout is
not used, because MNIST-1D's 40 inputs are a dense signal, not MNIST's redundant pixels.

Example::

    from droplab.reproduce.findings import FINDINGS, Context
    finding = FINDINGS[1].run(Context(size="smoke", seeds=[0, 1]))
    finding.agrees, finding.measured["text"]
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from droplab._checks import check_choice
from droplab.models import ModelSpec
from droplab.reproduce._train import Arm, Skip, as_sequence, finite, load, train_group
from droplab.stats import Estimate, paired_difference
from droplab.stats import interval, resolve_stat, rule_text
from droplab.train import EarlyStopping, TrainConfig

__all__ = [
    "SIZES",
    "Finding",
    "Spec",
    "Context",
    "FINDINGS",
    "dropout_vs_none",
    "regularizer_ladder",
    "rate_curve",
    "data_size",
    "mc_vs_weight_scaling",
    "bernoulli_vs_gaussian",
    "structured_dropout",
    "variational_rnn",
    "concrete_rate",
    "early_stopping",
    "robustness",
    "weight_decay",
]

#: Run sizes: ``smoke`` (seconds per finding, for tests), ``quick`` (all of them in a few
#: minutes on two CPU cores) and ``full`` (more seeds, epochs and grid points).
SIZES = ("smoke", "quick", "full")

_DEFAULT_SEEDS = {"smoke": 2, "quick": 3, "full": 5}


# --- records --------------------------------------------------------------------------------------
@dataclasses.dataclass
class Finding:
    """One finding: the published figure, droplab's measurement, and whether the shapes agree.

    Attributes:
        number: 1..12, the order of the issue.
        name: short title.
        citation: the paper (authors, venue, year, arXiv id where there is one).
        published: ``{"text": ..., "numbers": {label: value}}`` as recorded in ANCHORS.md
            (``(S)``: confirmed only through agreeing secondary copies).
        criterion: the shape test that decides ``agrees``, stated before the run.
        measured: ``{"text": one-line summary, "values": {label: estimate dict}}``; estimates
            are means with 95% t intervals over seeds (``mean``, ``lo``, ``hi``, ``n``, ...).
        agrees: whether the measurement passes ``criterion`` (``False`` when skipped).
        seeds: the seeds every arm was trained with.
        seconds: wall time of the finding.
        skipped: why the finding did not run (and how to make it run), or ``None``.
        setting: what was trained, on what, for how long.
        notes: remarks (parts skipped, how the criterion came out part by part, caveats).
        plot: figure data for the report (panels of lines or bars), or ``None``.
    """

    number: int
    name: str
    citation: str
    published: dict[str, Any]
    criterion: str
    measured: dict[str, Any]
    agrees: bool
    seeds: list[int]
    seconds: float
    skipped: str | None = None
    setting: str = ""
    notes: list[str] = dataclasses.field(default_factory=list)
    plot: dict[str, Any] | None = None

    @property
    def status(self) -> str:
        """``"skipped"``, ``"agrees"`` or ``"disagrees"``."""
        if self.skipped is not None:
            return "skipped"
        return "agrees" if self.agrees else "disagrees"

    def to_dict(self, *, plot: bool = False) -> dict[str, Any]:
        """A JSON-ready dict (non-finite numbers become ``None``); ``plot`` adds the figure data."""
        out = dataclasses.asdict(self)
        if not plot:
            out.pop("plot")
        out["status"] = self.status
        return _jsonable(out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@dataclasses.dataclass
class Context:
    """How a run of the findings is sized and where its data lives.

    Args:
        size: one of :data:`SIZES`. Default ``"quick"``.
        seeds: the seeds (default: 2 for smoke, 3 for quick, 5 for full).
        data_dir: folder with the Fashion-MNIST idx files (default: the usual search).
        cache_dir: droplab's cache folder (MNIST-1D). Default None (the default cache).
        progress: called with the fraction of the current finding that is done.
    """

    size: str = "quick"
    seeds: Sequence[int] | None = None
    data_dir: str | None = None
    cache_dir: str | None = None
    progress: Callable[[float], None] | None = None
    cache: dict[Any, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("size", self.size, SIZES)
        if self.seeds is None:
            self.seeds = list(range(_DEFAULT_SEEDS[self.size]))
        self.seeds = [int(s) for s in self.seeds]

    def pick(self, smoke: Any, quick: Any, full: Any) -> Any:
        """The value for this run's size."""
        return {"smoke": smoke, "quick": quick, "full": full}[self.size]

    def advance(self, fraction: float) -> None:
        """Report that ``fraction`` (0..1) of the current finding is done."""
        if self.progress is not None:
            self.progress(min(1.0, max(0.0, fraction)))


@dataclasses.dataclass(frozen=True)
class Spec:
    """A finding as declared before it runs: what was published and how agreement is decided.

    Attributes:
        number, name, citation, published, criterion: as in :class:`Finding`.
        func: ``ctx -> Outcome`` (the measurement and the verdict).
        cost: rough seconds of the quick run on a loaded 2-core CPU (for the ETA).
    """

    number: int
    name: str
    citation: str
    published: dict[str, Any]
    criterion: str
    func: Callable[[Context], _Outcome]
    cost: float

    def run(self, ctx: Context) -> Finding:
        """Run the finding in ``ctx``; a missing dataset gives a skipped :class:`Finding`."""
        t0 = time.perf_counter()
        try:
            out = self.func(ctx)
        except Skip as exc:
            return Finding(
                self.number, self.name, self.citation, self.published, self.criterion,
                {"text": "not measured", "values": {}}, False, list(ctx.seeds),
                time.perf_counter() - t0, skipped=str(exc),
            )
        return Finding(
            self.number, self.name, self.citation, self.published, self.criterion,
            {"text": out.text, "values": out.values}, bool(out.agrees), list(ctx.seeds),
            time.perf_counter() - t0, None, out.setting,
            [*out.notes, rule_text(resolve_stat(None, len(ctx.seeds)))], out.plot,
        )


@dataclasses.dataclass
class _Outcome:
    text: str
    values: dict[str, Any]
    agrees: bool
    setting: str
    notes: list[str] = dataclasses.field(default_factory=list)
    plot: dict[str, Any] | None = None


# --- small helpers --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Est(Estimate):
    """An :class:`~droplab.sweep.Estimate` that keeps the per-seed values it summarizes."""

    per_seed: dict[int, float] = dataclasses.field(default_factory=dict)


def _est(values: Mapping[int, float]) -> _Est:
    """Mean and 95% interval over seeds of ``{seed: value}`` (droplab's rule: :func:`droplab.stats.resolve_stat`)."""
    e = interval(list(values.values()), resolve_stat(None, len(values)))
    return _Est(**dataclasses.asdict(e), per_seed={int(k): float(v) for k, v in values.items()})


def _diff(a: Mapping[int, float], b: Mapping[int, float]) -> _Est:
    """Paired by seed: mean and 95% interval of ``a[s] - b[s]`` over the seeds both have.

    The interval is the rule's (:func:`droplab.stats.resolve_stat`: t below 6 seeds, studentized
    bootstrap from 6); each verdict is one comparison, so there is no family to correct.
    """
    n = sum(1 for s in a if s in b)
    e = paired_difference(dict(a), dict(b), method=resolve_stat(None, n))
    per_seed = {int(s): float(a[s] - b[s]) for s in a if s in b}
    return _Est(**dataclasses.asdict(e), per_seed=per_seed)


def _f(x: float, digits: int = 1) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.{digits}f}"


def _txt(e: Estimate, unit: str = "%", digits: int = 1, signed: bool = False) -> str:
    """``"48.7% [46.1, 51.2]"`` (the bracket is the 95% CI; absent with one seed)."""
    sign = "+" if signed and math.isfinite(e.mean) and e.mean >= 0 else ""
    ci = f" [{_f(e.lo, digits)}, {_f(e.hi, digits)}]" if math.isfinite(e.lo) else ""
    return f"{sign}{_f(e.mean, digits)}{unit}{ci}"


def _line(label: str, xs: Sequence[float], ests: Sequence[Estimate]) -> dict[str, Any]:
    return {
        "label": label,
        "x": list(xs),
        "mean": [e.mean for e in ests],
        "lo": [e.lo for e in ests],
        "hi": [e.hi for e in ests],
    }


def _bar(label: str, e: Estimate) -> dict[str, Any]:
    return {"label": label, "mean": e.mean, "lo": e.lo, "hi": e.hi}


def _spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    if len(xs) < 2 or len(set(ys)) < 2 or len(set(xs)) < 2:
        return math.nan
    return float(spearmanr(xs, ys).statistic)


def _mlp(hidden: Sequence[int], places: Sequence[str] = ("hidden",)) -> ModelSpec:
    """An MLP spec with zero-rate dropout entries at ``places`` (arms bring their rates)."""
    return ModelSpec(kind="mlp", hidden=tuple(hidden), dropout={p: 0.0 for p in places})


def _train(ctx: Context, epochs: int, **changes: Any) -> TrainConfig:
    """MNIST-1D's reference recipe: Adam, lr 1e-2, batch 100 (CPU, no train-set evaluation)."""
    base = dict(optimizer="adam", lr=1e-2, batch_size=100, epochs=epochs, eval_train=False,
                device="cpu")
    base.update(changes)
    return TrainConfig(**base)


def _mnist1d(ctx: Context, **options: Any):
    return load(ctx, "mnist1d", subsample=ctx.pick(200, 1000, 1000), **options)


_HIDDEN = (128, 128)
_DROP = 0.5  # Srivastava et al.'s hidden rate


def _epochs(ctx: Context) -> int:
    # The 128x2 MLP without dropout converges in about 45 epochs of 10 steps on 1000 MNIST-1D
    # examples; dropout nets train 2-3x longer (Srivastava et al., Appendix A), hence 100.
    return ctx.pick(2, 100, 200)


def _setting_mlp(ctx: Context, splits, hidden=_HIDDEN, epochs=None, lr=1e-2) -> str:
    epochs = epochs or _epochs(ctx)
    return (
        f"{splits.name}: {len(splits.x_train)} training examples, {len(splits.x_test)} test; "
        f"MLP {'-'.join(str(h) for h in (math.prod(splits.input_shape), *hidden, splits.n_outputs))} "
        f"ReLU; Adam lr {lr:g}, batch 100, {epochs} epochs, final weights; "
        f"{len(ctx.seeds)} seeds"
    )


# --- 1. dropout vs none ---------------------------------------------------------------------------
def _measure_dropout_vs_none(ctx: Context) -> _Outcome:
    """Dropout against no dropout on over-parameterized MLPs (Srivastava et al. 2014, Table 2)."""
    parts = [
        ("mnist1d", "MNIST-1D", 1e-2, _epochs(ctx)),
        ("fashion_mnist", "Fashion-MNIST", 1e-3, ctx.pick(2, 60, 120)),
    ]
    values, texts, notes, settings, bars, verdicts = {}, [], [], [], [], []
    for i, (name, label, lr, epochs) in enumerate(parts):
        try:
            splits = load(ctx, name, subsample=ctx.pick(200, 1000, 1000))
        except Skip as exc:
            notes.append(f"{label} skipped: {exc}")
            continue
        cfg = _train(ctx, epochs, lr=lr)
        arms = [Arm("none", cfg, (0.0, 0.0)), Arm("dropout", cfg, (_DROP, _DROP))]
        res = train_group(ctx, splits, _mlp(_HIDDEN), arms, span=(i / 2, (i + 1) / 2))
        none, drop = _est(res.errors("none")), _est(res.errors("dropout"))
        d = _diff(res.errors("dropout"), res.errors("none"))
        values[f"{label} no dropout"] = none.to_dict()
        values[f"{label} dropout"] = drop.to_dict()
        values[f"{label} dropout - none"] = d.to_dict()
        ok = d.mean < 0 and d.hi < 0
        verdicts.append(ok)
        texts.append(f"{label}: none {_txt(none)}, dropout {_txt(drop)}, "
                     f"difference {_txt(d, ' pts', signed=True)}")
        notes.append(f"{label}: {'passes' if ok else 'fails'} the criterion")
        settings.append(_setting_mlp(ctx, splits, epochs=epochs, lr=lr))
        bars += [_bar(f"{label}\nnone", none), _bar(f"{label}\ndropout", drop)]
    if not verdicts:
        raise Skip("; ".join(notes))
    return _Outcome(
        "; ".join(texts), values, all(verdicts), " | ".join(settings) + f"; dropout: hidden {_DROP}",
        notes, {"panels": [{"title": "Test error", "ylabel": "test error (%)", "bars": bars}]},
    )


# --- 2. regularizer ladder -----------------------------------------------------------------------
_LADDER = ("L2", "L2+L1", "max-norm", "dropout+L2", "dropout+max-norm")
_LADDER_PUBLISHED = {"L2": 1.62, "L2+L1": 1.60, "max-norm": 1.35, "dropout+L2": 1.25,
                     "dropout+max-norm": 1.05}


def _measure_regularizer_ladder(ctx: Context) -> _Outcome:
    """L2, L2+L1, max-norm, dropout+L2, dropout+max-norm (Srivastava et al. 2014, Table 9)."""
    splits = _mnist1d(ctx)
    l2, l1, c = 1e-4, 1e-5, 3.0
    e = _epochs(ctx)
    none, drop = (0.0, 0.0), (_DROP, _DROP)
    arms = [
        Arm("L2", _train(ctx, e, l2=l2), none),
        Arm("L2+L1", _train(ctx, e, l2=l2, l1=l1), none),
        Arm("max-norm", _train(ctx, e, max_norm=c), none),
        Arm("dropout+L2", _train(ctx, e, l2=l2), drop),
        Arm("dropout+max-norm", _train(ctx, e, max_norm=c), drop),
    ]
    res = train_group(ctx, splits, _mlp(_HIDDEN), arms)
    ests = {k: _est(res.errors(k)) for k in _LADDER}
    plain = [ests[k].mean for k in _LADDER[:3]]
    dropped = [ests[k].mean for k in _LADDER[3:]]
    agrees = max(dropped) < min(plain)
    rho = _spearman([_LADDER_PUBLISHED[k] for k in _LADDER], [ests[k].mean for k in _LADDER])
    order = sorted(_LADDER, key=lambda k: ests[k].mean)
    return _Outcome(
        ", ".join(f"{k} {_txt(ests[k])}" for k in _LADDER),
        {k: v.to_dict() for k, v in ests.items()},
        agrees,
        _setting_mlp(ctx, splits) + f"; L2 {l2:g} (loss += l2*sum w^2), L1 {l1:g}, max-norm c={c:g}, "
        f"dropout: hidden {_DROP}",
        [f"measured order, best first: {' < '.join(order)}",
         f"Spearman rank correlation with the published errors: {_f(rho, 2)} (for information; "
         f"not part of the criterion)"],
        {"panels": [{"title": "Test error by regularizer", "ylabel": "test error (%)",
                     "bars": [_bar(k, ests[k]) for k in _LADDER]}]},
    )


# --- 3. dropout rate curve -----------------------------------------------------------------------
def _measure_rate_curve(ctx: Context) -> _Outcome:
    """Test error against the retain probability, n or p*n fixed (Srivastava et al. 2014, Fig. 9)."""
    splits = _mnist1d(ctx)
    retains = ctx.pick((0.1, 0.5, 1.0), (0.1, 0.25, 0.5, 0.75, 1.0),
                       (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0))
    n, pn = 128, 32
    cfg = _train(ctx, _epochs(ctx))
    arms = [Arm(f"n:{r}", cfg, (1.0 - r, 1.0 - r)) for r in retains]
    # Population cost grows with the width: the n-fixed group is about half the work.
    res_n = train_group(ctx, splits, _mlp((n, n)), arms, span=(0.0, 0.45))
    fixed_n = [_est(res_n.errors(f"n:{r}")) for r in retains]
    widths = {r: max(1, round(pn / r)) for r in retains}
    weight = {r: widths[r] ** 2 for r in retains}
    total, done = sum(weight.values()), 0.0
    fixed_pn = []
    for r in retains:
        w = widths[r]
        span = (0.45 + 0.55 * done / total, 0.45 + 0.55 * (done + weight[r]) / total)
        res = train_group(ctx, splits, _mlp((w, w)), [Arm(f"pn:{r}", cfg, (1.0 - r, 1.0 - r))],
                          span=span)
        fixed_pn.append(_est(res.errors(f"pn:{r}")))
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
        f"n fixed: {', '.join(f'{r:g}: {_f(m)}%' for r, m in zip(retains, means_n))} "
        f"(spread {_f(spread_n)} pts); p*n fixed: "
        f"{', '.join(f'{r:g}: {_f(m)}%' for r, m in zip(retains, means_pn))} (spread {_f(spread_pn)} pts)"
    )
    return _Outcome(
        text, values, a and b,
        _setting_mlp(ctx, splits, hidden=("n", "n")) + f"; hidden dropout 1 - retain; n = {n} "
        f"fixed, or n = {pn}/retain so that p*n = {pn}",
        [f"(a) underfitting at retain {min(retains):g}: {'yes' if a else 'no'} "
         f"({_f(low)}% vs best in [0.4, 0.8] {_f(min(mid)) if mid else 'n/a'}%)",
         f"(b) p*n fixed is flatter: {'yes' if b else 'no'} "
         f"(spread {_f(spread_pn)} vs {_f(spread_n)} pts)"],
        {"panels": [{"title": "Test error against retain probability", "xlabel": "retain probability p",
                     "ylabel": "test error (%)",
                     "lines": [_line(f"n = {n} fixed", retains, fixed_n),
                               _line(f"p*n = {pn} fixed", retains, fixed_pn)]}]},
    )


# --- 4. data set size ----------------------------------------------------------------------------
def _measure_data_size(ctx: Context) -> _Outcome:
    """Dropout's gain against the number of training examples (Srivastava et al. 2014, Fig. 10)."""
    sizes = ctx.pick((100, 200), (100, 300, 1000, 3600), (100, 250, 500, 1000, 2000, 3600))
    steps = ctx.pick(20, 600, 1500)
    gains, nones, drops = [], [], []
    done = 0
    for n in sizes:
        splits = load(ctx, "mnist1d", subsample=n)
        # At least `steps` updates (small N) and at least the epochs of the other findings
        # (large N), so that no run -- dropout runs train slower -- is cut short.
        epochs = max(_epochs(ctx), math.ceil(steps / math.ceil(n / 100)))
        cfg = _train(ctx, epochs)
        arms = [Arm("none", cfg, (0.0, 0.0)), Arm("dropout", cfg, (_DROP, _DROP))]
        # Every size gets the same number of updates, so the cost is about equal per size.
        res = train_group(ctx, splits, _mlp(_HIDDEN), arms,
                          span=(done / len(sizes), (done + 1) / len(sizes)))
        done += 1
        gains.append(_diff(res.errors("none"), res.errors("dropout")))
        nones.append(_est(res.errors("none")))
        drops.append(_est(res.errors("dropout")))
    means = [g.mean for g in gains]
    best = max(range(len(sizes)), key=lambda i: means[i])
    a = gains[0].lo <= 0 if math.isfinite(gains[0].lo) else gains[0].mean <= 0
    b = 0 < best < len(sizes) - 1
    values = {f"N={n} gain (none - dropout)": g.to_dict() for n, g in zip(sizes, gains)}
    values.update({f"N={n} no dropout": e.to_dict() for n, e in zip(sizes, nones)})
    values.update({f"N={n} dropout": e.to_dict() for n, e in zip(sizes, drops)})
    return _Outcome(
        "gain of dropout (pts of test error): "
        + ", ".join(f"N={n}: {_txt(g, '', signed=True)}" for n, g in zip(sizes, gains)),
        values, a and b,
        f"mnist1d subsets of N examples (nested), {len(splits.x_test)} test; MLP 40-128-128-10 ReLU; "
        f"Adam lr 0.01, batch min(100, N), at least {steps} updates and {_epochs(ctx)} epochs at "
        f"every N; dropout: hidden {_DROP}; "
        f"{len(ctx.seeds)} seeds",
        [f"(a) no gain at the smallest N (CI reaches 0 or below): {'yes' if a else 'no'}",
         f"(b) the largest gain is at an interior N: {'yes' if b else 'no'} (N={sizes[best]})"]
        + ([] if b else [f"the largest N here is {sizes[-1]} (the paper's goes to 50k): the "
                         f"shrinking part of the curve may lie beyond it"]),
        {"panels": [{"title": "Dropout's gain against N", "xlabel": "training examples N",
                     "ylabel": "error(none) - error(dropout), pts", "xlog": True,
                     "lines": [_line("gain", sizes, gains)], "zero": True},
                    {"title": "Test error against N", "xlabel": "training examples N",
                     "ylabel": "test error (%)", "xlog": True,
                     "lines": [_line("no dropout", sizes, nones), _line("dropout", sizes, drops)]}]},
    )


# --- 5. MC averaging vs weight scaling -----------------------------------------------------------
def _measure_mc_vs_weight_scaling(ctx: Context) -> _Outcome:
    """MC model averaging against weight scaling as T grows (Srivastava et al. 2014, Fig. 11)."""
    from droplab.inference import mc_vs_weight_scaling as compare

    splits = _mnist1d(ctx)
    ts = ctx.pick((1, 2, 50), (1, 2, 5, 10, 20, 50, 100), (1, 2, 5, 10, 20, 50, 100, 200))
    cfg = _train(ctx, _epochs(ctx))
    res = train_group(ctx, splits, _mlp(_HIDDEN), [Arm("dropout", cfg, (_DROP, _DROP))],
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
    d = {t: _est(diffs[t]) for t in ts}
    e_mc = {t: _est(mc[t]) for t in ts}
    e_ws = _est(ws)
    d1, d50 = d[1], d[50]
    sd50 = d50.sd if math.isfinite(d50.sd) else 0.0
    agrees = d1.mean > 0 and d50.mean <= sd50
    values = {f"MC T={t}": e_mc[t].to_dict() for t in ts}
    values["weight scaling"] = e_ws.to_dict()
    values.update({f"MC T={t} - weight scaling": d[t].to_dict() for t in ts})
    return _Outcome(
        f"weight scaling {_txt(e_ws)}; MC minus weight scaling: "
        + ", ".join(f"T={t}: {_txt(d[t], ' pts', 2, signed=True)}" for t in ts),
        values, agrees,
        _setting_mlp(ctx, splits) + f"; dropout: hidden {_DROP}; MC: T passes with dropout on, "
        f"probabilities averaged; one mask draw per model seed",
        [f"T=1 worse than weight scaling: {'yes' if d1.mean > 0 else 'no'} "
         f"({_txt(d1, ' pts', 2, signed=True)})",
         f"T=50 within one sd of weight scaling (or better): {'yes' if d50.mean <= sd50 else 'no'} "
         f"(difference {_f(d50.mean, 2)} pts, sd {_f(sd50, 2)})"],
        {"panels": [{"title": "MC averaging vs weight scaling", "xlabel": "sampled networks T",
                     "ylabel": "test error (%)", "xlog": True,
                     "lines": [_line("MC averaging", ts, [e_mc[t] for t in ts]),
                               _line("weight scaling", ts, [e_ws for _ in ts])]}]},
    )


# --- 6. Bernoulli vs Gaussian --------------------------------------------------------------------
def _measure_bernoulli_vs_gaussian(ctx: Context) -> _Outcome:
    """Bernoulli vs Gaussian noise of equal variance (Srivastava et al. 2014, Table 10)."""
    splits = _mnist1d(ctx)
    cfg = _train(ctx, _epochs(ctx))
    bern = train_group(ctx, splits, _mlp(_HIDDEN), [Arm("bernoulli", cfg, (_DROP, _DROP))],
                       span=(0.0, 0.3))
    gspec = ModelSpec(kind="mlp", hidden=_HIDDEN, dropout={"hidden": {"p": _DROP, "layer": "gaussian"}})
    gauss = train_group(ctx, splits, gspec, [Arm("gaussian", cfg)], span=(0.3, 1.0))
    b, g = _est(bern.errors("bernoulli")), _est(gauss.errors("gaussian"))
    d = _diff(gauss.errors("gaussian"), bern.errors("bernoulli"))
    return _Outcome(
        f"Bernoulli {_txt(b)}, Gaussian {_txt(g)}, Gaussian - Bernoulli {_txt(d, ' pts', signed=True)}",
        {"Bernoulli": b.to_dict(), "Gaussian": g.to_dict(), "Gaussian - Bernoulli": d.to_dict()},
        d.mean <= 0,
        _setting_mlp(ctx, splits) + f"; hidden p={_DROP}: Bernoulli keep mask scaled by 1/(1-p), "
        f"or Gaussian N(1, p/(1-p)) (same variance)",
        [f"paired 95% CI of Gaussian - Bernoulli {'excludes' if d.hi < 0 or d.lo > 0 else 'includes'} 0"],
        {"panels": [{"title": "Test error", "ylabel": "test error (%)",
                     "bars": [_bar("Bernoulli", b), _bar("Gaussian", g)]}]},
    )


# --- 7. DropConnect, spatial dropout, DropBlock --------------------------------------------------
def _measure_structured_dropout(ctx: Context) -> _Outcome:
    """DropConnect vs dropout in an MLP; spatial dropout and DropBlock vs dropout in a CNN."""
    splits = _mnist1d(ctx)
    cfg = _train(ctx, _epochs(ctx))
    mlp = train_group(ctx, splits, _mlp(_HIDDEN), [Arm("dropout", cfg, (_DROP, _DROP))],
                      span=(0.0, 0.1))
    # Moment-matching inference, as Wan et al. define it (ANCHORS.md), not the mean network.
    dc_spec = ModelSpec(kind="mlp", hidden=_HIDDEN, dropout={"hidden": {
        "p": _DROP, "layer": "dropconnect", "options": {"inference": "moment"}}})
    dc = train_group(ctx, splits, dc_spec, [Arm("dropconnect", cfg)], span=(0.1, 0.3))
    cnn_epochs = ctx.pick(2, 40, 100)
    ccfg = _train(ctx, cnn_epochs)
    p = 0.2
    layers = {
        "dropout": {"p": p, "layer": "dropout"},
        "spatial": {"p": p, "layer": "spatial"},
        "dropblock": {"p": p, "layer": "dropblock", "options": {"block_size": 3}},
    }
    cnn: dict[str, dict[int, float]] = {}
    for i, (name, drop) in enumerate(layers.items()):
        spec = ModelSpec(kind="cnn1d", hidden=(25, 25, 25), kernel_size=(5, 3, 3), stride=2,
                         padding=1, dropout={"hidden": drop})
        res = train_group(ctx, splits, spec, [Arm(name, ccfg)],
                          span=(0.3 + 0.7 * i / 3, 0.3 + 0.7 * (i + 1) / 3))
        cnn[name] = res.errors(name)
    e = {
        "MLP dropout": _est(mlp.errors("dropout")),
        "MLP DropConnect": _est(dc.errors("dropconnect")),
        "CNN dropout": _est(cnn["dropout"]),
        "CNN spatial dropout": _est(cnn["spatial"]),
        "CNN DropBlock": _est(cnn["dropblock"]),
    }
    d = {
        "DropConnect - dropout (MLP)": _diff(dc.errors("dropconnect"), mlp.errors("dropout")),
        "spatial - dropout (CNN)": _diff(cnn["spatial"], cnn["dropout"]),
        "DropBlock - dropout (CNN)": _diff(cnn["dropblock"], cnn["dropout"]),
    }
    parts = {k: v.mean <= 0 for k, v in d.items()}
    values = {k: v.to_dict() for k, v in {**e, **d}.items()}
    return _Outcome(
        ", ".join(f"{k} {_txt(v)}" for k, v in e.items()),
        values, all(parts.values()),
        _setting_mlp(ctx, splits) + f"; MLP hidden p={_DROP} (dropout, or DropConnect on the hidden "
        f"weights with moment-matching inference); CNN: MNIST-1D reference CNN (25-25-25 "
        f"channels, kernels 5-3-3, stride 2), "
        f"{cnn_epochs} epochs, hidden p={p}: element-wise, spatial (whole channels) or DropBlock "
        f"(block 3)",
        [f"{k}: {_txt(v, ' pts', signed=True)} -> {'passes' if parts[k] else 'fails'}"
         for k, v in d.items()],
        {"panels": [{"title": "MLP", "ylabel": "test error (%)",
                     "bars": [_bar("dropout", e["MLP dropout"]), _bar("DropConnect", e["MLP DropConnect"])]},
                    {"title": "CNN", "ylabel": "test error (%)",
                     "bars": [_bar("dropout", e["CNN dropout"]), _bar("spatial", e["CNN spatial dropout"]),
                              _bar("DropBlock", e["CNN DropBlock"])]}]},
    )


# --- 8. variational vs per-step dropout in a GRU -------------------------------------------------
def _measure_variational_rnn(ctx: Context) -> _Outcome:
    """Variational (locked) against per-step dropout in a GRU (Gal & Ghahramani 2016)."""
    base = load(ctx, "mnist1d", subsample=ctx.pick(200, 1000, 3600))
    length = 10
    splits = as_sequence(base, length)
    epochs = ctx.pick(1, 25, 40)
    cfg = _train(ctx, epochs)
    p = 0.3
    specs = {
        "per-step": ModelSpec(kind="gru", hidden=(32, 32), dropout={"hidden": p}),
        "variational": ModelSpec(kind="gru", hidden=(32, 32), dropout={"recurrent": p}),
    }
    errs = {}
    for i, (name, spec) in enumerate(specs.items()):
        # vmap runs a GRU no faster than a plain loop on CPU: train one run at a time.
        res = train_group(ctx, splits, spec, [Arm(name, cfg)], span=(i / 2, (i + 1) / 2),
                          engine="trainer")
        errs[name] = res.errors(name)
    ps, va = _est(errs["per-step"]), _est(errs["variational"])
    d = _diff(errs["variational"], errs["per-step"])
    return _Outcome(
        f"per-step {_txt(ps)}, variational {_txt(va)}, variational - per-step "
        f"{_txt(d, ' pts', signed=True)}",
        {"per-step": ps.to_dict(), "variational": va.to_dict(), "variational - per-step": d.to_dict()},
        d.mean < 0,
        f"mnist1d, {len(splits.x_train)} training examples read as {length} steps x "
        f"{splits.input_shape[1]} values; GRU 32-32, last step -> Linear; Adam lr 0.01, batch 100, "
        f"{epochs} epochs; dropout p={p} on each layer's output sequence: a fresh mask per step, "
        f"or one mask per sequence; {len(ctx.seeds)} seeds",
        [f"paired 95% CI of variational - per-step {'excludes' if d.hi < 0 or d.lo > 0 else 'includes'} 0",
         "both variants mask the outputs of each layer (the inputs of the next); the fused GRU "
         "leaves h(t-1) itself unmasked in both"],
        {"panels": [{"title": "GRU test error", "ylabel": "test error (%)",
                     "bars": [_bar("per-step", ps), _bar("variational", va)]}]},
    )


# --- 9. concrete dropout ------------------------------------------------------------------------
def _measure_concrete_rate(ctx: Context) -> _Outcome:
    """The learned concrete-dropout rate against the amount of data (Gal, Hron & Kendall 2017)."""
    sizes = ctx.pick((50, 400), (50, 200, 1000, 4000), (25, 50, 100, 200, 500, 1000, 2000, 4000))
    steps = ctx.pick(20, 500, 2000)
    length_scale = 1e-4
    rates: dict[int, dict[int, float]] = {}
    errors: dict[int, dict[int, float]] = {}
    n_pool = math.ceil(max(sizes) / 0.9) + 1
    for i, n in enumerate(sizes):
        splits = load(ctx, "sine", subsample=n, options={"n": n_pool})
        drop = {"p": 0.1, "layer": "concrete",
                "options": {"weight_regularizer": length_scale**2 / n, "dropout_regularizer": 2.0 / n}}
        spec = ModelSpec(kind="mlp", hidden=(64, 64), dropout={"hidden": drop})
        batch = min(50, n)
        epochs = max(1, math.ceil(steps / math.ceil(n / batch)))
        cfg = _train(ctx, epochs, batch_size=batch)
        res = train_group(ctx, splits, spec, [Arm("concrete", cfg)], keep_models=True,
                          span=(i / len(sizes), (i + 1) / len(sizes)))
        from droplab.nn import ConcreteDropout

        rates[n], errors[n] = {}, {}
        for s in ctx.seeds:
            layers = [m for m in res.model("concrete", s).modules() if isinstance(m, ConcreteDropout)]
            rates[n][s] = sum(m.p for m in layers) / len(layers)
            errors[n][s] = res.test["concrete"][s]["rmse"]
    e = {n: _est(rates[n]) for n in sizes}
    means = [e[n].mean for n in sizes]
    rho = _spearman(list(sizes), means)
    agrees = means[-1] < means[0] and rho < 0
    values = {f"N={n} learned p": e[n].to_dict() for n in sizes}
    values.update({f"N={n} test RMSE": _est(errors[n]).to_dict() for n in sizes})
    return _Outcome(
        "learned rate: " + ", ".join(f"N={n}: {_txt(e[n], '', 3)}" for n in sizes)
        + f"; Spearman(N, p) = {_f(rho, 2)}",
        values, agrees,
        f"sine regression y = sin(x) + 0.1 eps, N training points, 1000 test; MLP 1-64-64-1 with "
        f"concrete dropout after each hidden layer (init p 0.1, t 0.1, wr = l^2/N with l = "
        f"{length_scale:g}, dr = 2/N); Adam lr 0.01, batch min(50, N), {steps} updates; "
        f"{len(ctx.seeds)} seeds; reported p: mean over the two layers",
        [f"p falls from the smallest to the largest N: {'yes' if means[-1] < means[0] else 'no'}",
         f"Spearman correlation of N and mean p: {_f(rho, 2)}"],
        {"panels": [{"title": "Learned dropout rate against N", "xlabel": "training points N",
                     "ylabel": "learned p", "xlog": True,
                     "lines": [_line("concrete dropout p", sizes, [e[n] for n in sizes])]}]},
    )


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


def _measure_early_stopping(ctx: Context) -> _Outcome:
    """Prechelt's GL, PQ and UP criteria against patience (Prechelt 1998)."""
    splits = _mnist1d(ctx)
    budget = ctx.pick(6, 60, 120)
    cfg = _train(ctx, budget)
    curves: dict[int, list[float]] = {}

    def record(pop, rows) -> None:
        acc = pop.evaluate(splits.x_test, splits.y_test)["acc"]
        for i, a in zip(pop.rows, acc):
            curves.setdefault(pop.members[i].seed, []).append(100 * (1 - a))

    res = train_group(ctx, splits, _mlp(_HIDDEN), [Arm("none", cfg, (0.0, 0.0))],
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
    e_stop = {c: _est(stops[c]) for c in _CRITERIA}
    e_err = {c: _est(errs[c]) for c in _CRITERIA}
    e_sec = {c: _est(secs[c]) for c in _CRITERIA}
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
    return _Outcome(
        "; ".join(f"{_CRITERION_LABEL[c]}: stop epoch {_f(e_stop[c].mean)}, test error "
                  f"{_txt(e_err[c])}, {_f(e_sec[c].mean, 2)} s" for c in _CRITERIA),
        values, agrees,
        _setting_mlp(ctx, splits, epochs=budget) + "; no dropout; val loss monitored (400 "
        "validation examples); strips k = 5; the best-validation weights restored",
        [f"latest to stop: {_CRITERION_LABEL[latest]}, earliest: {_CRITERION_LABEL[earliest]}; "
         f"the later one's error is {_f(ratio_e)}% {'lower' if ratio_e >= 0 else 'higher'} "
         f"(relative) for {_f(ratio_t)}x the training time",
         "criteria replayed on the recorded epochs of the same runs: a run's epochs up to its stop "
         "do not depend on the criterion, so this equals stopping each run live"]
        + (["every criterion restored the same (best-validation-loss) epoch in every run, so "
            "their test errors tie: the later stops bought nothing here"] if same else []),
        {"panels": [{"title": "Stop epoch", "ylabel": "epoch",
                     "bars": [_bar(_CRITERION_LABEL[c], e_stop[c]) for c in _CRITERIA]},
                    {"title": "Test error at the restored weights", "ylabel": "test error (%)",
                     "bars": [_bar(_CRITERION_LABEL[c], e_err[c]) for c in _CRITERIA]}]},
    )


# --- 11. robustness -----------------------------------------------------------------------------
def _measure_robustness(ctx: Context) -> _Outcome:
    """Accuracy under input noise and label noise, with and without dropout."""
    from droplab.inference import accuracy_under_noise

    splits = _mnist1d(ctx)
    cfg = _train(ctx, _epochs(ctx))
    arms = [Arm("none", cfg, (0.0, 0.0)), Arm("dropout", cfg, (_DROP, _DROP))]
    clean = train_group(ctx, splits, _mlp(_HIDDEN), arms, span=(0.0, 0.45), keep_models=True)
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
    noisy = train_group(ctx, noisy_splits, _mlp(_HIDDEN), arms, span=(0.5, 1.0))
    lost = {k: {s: acc[k][0.0][s] - acc[k][1.0][s] for s in ctx.seeds} for k in acc}
    d_lost = _diff(lost["dropout"], lost["none"])
    noisy_acc = {k: {s: 100 - v for s, v in noisy.errors(k).items()} for k in ("none", "dropout")}
    d_label = _diff(noisy_acc["dropout"], noisy_acc["none"])
    a, b = d_lost.mean < 0, d_label.mean > 0
    values = {}
    for k in ("none", "dropout"):
        for lv in levels:
            values[f"{k} accuracy, input noise {lv:g}"] = _est(acc[k][lv]).to_dict()
        values[f"{k} accuracy lost to noise 1.0"] = _est(lost[k]).to_dict()
        values[f"{k} accuracy, {noise:.0%} label noise"] = _est(noisy_acc[k]).to_dict()
    values["dropout - none, accuracy lost to input noise"] = d_lost.to_dict()
    values["dropout - none, accuracy with label noise"] = d_label.to_dict()
    return _Outcome(
        f"accuracy lost to input noise (std 1): none {_txt(_est(lost['none']), ' pts')}, dropout "
        f"{_txt(_est(lost['dropout']), ' pts')}; with {noise:.0%} label noise: none "
        f"{_txt(_est(noisy_acc['none']))}, dropout {_txt(_est(noisy_acc['dropout']))}",
        values, a and b,
        _setting_mlp(ctx, splits) + f"; dropout: hidden {_DROP}; input noise: Gaussian, std in "
        f"standardized units, on the test inputs (one draw per seed); label noise: {noise:.0%} of "
        f"the training labels replaced by another class",
        [f"(a) dropout loses less accuracy to input noise: {'yes' if a else 'no'} "
         f"({_txt(d_lost, ' pts', signed=True)})",
         f"(b) dropout is more accurate with noisy labels: {'yes' if b else 'no'} "
         f"({_txt(d_label, ' pts', signed=True)})"],
        {"panels": [{"title": "Accuracy under input noise", "xlabel": "noise std",
                     "ylabel": "test accuracy (%)",
                     "lines": [_line(k if k == "dropout" else "no dropout", levels,
                                     [_est(acc[k][lv]) for lv in levels]) for k in ("none", "dropout")]},
                    {"title": f"Accuracy, {noise:.0%} label noise", "ylabel": "test accuracy (%)",
                     "bars": [_bar("no dropout", _est(noisy_acc["none"])),
                              _bar("dropout", _est(noisy_acc["dropout"]))]}]},
    )


# --- 12. weight decay ---------------------------------------------------------------------------
def _measure_weight_decay(ctx: Context) -> _Outcome:
    """AdamW's decoupled decay vs Adam + L2 over lr x decay (Loshchilov & Hutter 2019)."""
    splits = _mnist1d(ctx)
    lrs = ctx.pick((1e-2,), (3e-3, 1e-2), (1e-3, 3e-3, 1e-2))
    l2s = ctx.pick((1e-4,), (1e-5, 1e-4, 1e-3), (1e-6, 1e-5, 1e-4, 1e-3))
    wds = ctx.pick((0.1,), (0.01, 0.1, 1.0), (0.001, 0.01, 0.1, 1.0))
    epochs = ctx.pick(2, 60, 120)  # no dropout: converged after about 45 epochs
    adam = [Arm(f"adam lr={lr:g} l2={l2:g}", _train(ctx, epochs, lr=lr, l2=l2), (0.0, 0.0))
            for lr in lrs for l2 in l2s]
    adamw = [Arm(f"adamw lr={lr:g} wd={wd:g}",
                 _train(ctx, epochs, optimizer="adamw", lr=lr, weight_decay=wd), (0.0, 0.0))
             for lr in lrs for wd in wds]
    r1 = train_group(ctx, splits, _mlp(_HIDDEN), adam, span=(0.0, 0.5))
    r2 = train_group(ctx, splits, _mlp(_HIDDEN), adamw, span=(0.5, 1.0))
    e = {a.key: _est(r1.errors(a.key)) for a in adam}
    e.update({a.key: _est(r2.errors(a.key)) for a in adamw})
    best_adam = min((a.key for a in adam), key=lambda k: e[k].mean)
    best_adamw = min((a.key for a in adamw), key=lambda k: e[k].mean)
    agrees = e[best_adamw].mean < e[best_adam].mean
    panels = []
    for title, grid, prefix, name in (("Adam + L2 penalty", l2s, "adam", "l2"),
                                      ("AdamW (decoupled)", wds, "adamw", "wd")):
        panels.append({"title": title, "xlabel": f"{name} (decay)", "ylabel": "test error (%)",
                       "xlog": True,
                       "lines": [_line(f"lr {lr:g}", grid, [e[f"{prefix} lr={lr:g} {name}={v:g}"] for v in grid])
                                 for lr in lrs]})
    return _Outcome(
        f"best Adam+L2: {best_adam} {_txt(e[best_adam])}; best AdamW: {best_adamw} {_txt(e[best_adamw])}",
        {k: v.to_dict() for k, v in e.items()},
        agrees,
        _setting_mlp(ctx, splits, epochs=epochs) + f"; no dropout; grid lr {list(lrs)} x L2 "
        f"{list(l2s)} (Adam, loss += l2*sum w^2) or decay {list(wds)} (AdamW, torch's convention "
        f"theta -= lr*wd*theta, weights only)",
        [f"{len(lrs) * len(l2s)} Adam+L2 and {len(lrs) * len(wds)} AdamW configurations; the best of "
         f"each grid is compared (selected on the test split it is reported on, the same for both)"],
        {"panels": panels},
    )


# --- registry -----------------------------------------------------------------------------------
_SRIVASTAVA = ("Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov, \"Dropout: A Simple Way "
               "to Prevent Neural Networks from Overfitting\", JMLR 15, 2014")


def _pub(text: str, **numbers: Any) -> dict[str, Any]:
    return {"text": text, "numbers": numbers}


_SPECS = [
    Spec(1, "Dropout vs no dropout on an over-parameterized MLP", _SRIVASTAVA + ", Table 2",
         _pub("MNIST test error, no augmentation: standard net 1.60%; dropout 3x1024 logistic "
              "1.35%, ReLU 1.25%; + max-norm 3x1024 1.06%, 2x8192 0.95% (S)",
              **{"standard net (%)": 1.60, "dropout 3x1024 logistic (%)": 1.35,
                 "dropout 3x1024 ReLU (%)": 1.25, "dropout + max-norm 3x1024 (%)": 1.06,
                 "dropout + max-norm 2x8192 (%)": 0.95}),
         "On each dataset that runs (MNIST-1D, Fashion-MNIST subset): dropout's mean test error is "
         "lower than no dropout's and the paired 95% CI of the difference (dropout - none) lies "
         "entirely below 0.",
         _measure_dropout_vs_none, 45),
    Spec(2, "Regularizer ladder", _SRIVASTAVA + ", Table 9",
         _pub("MNIST % error, 784-1024-1024-2048-10 ReLU, SGD: L2 1.62, L2+L1 1.60, L2+KL-sparsity "
              "1.55, max-norm 1.35, dropout+L2 1.25, dropout+max-norm 1.05 (S)",
              **{"L2": 1.62, "L2+L1": 1.60, "L2+KL-sparsity": 1.55, "max-norm": 1.35,
                 "dropout+L2": 1.25, "dropout+max-norm": 1.05}),
         "Each of the two dropout configurations (dropout+L2, dropout+max-norm) has a lower mean "
         "test error than each of the three without dropout (L2, L2+L1, max-norm).",
         _measure_regularizer_ladder, 27),
    Spec(3, "Dropout rate curve: n fixed vs p*n fixed", _SRIVASTAVA + ", Fig. 9",
         _pub("784-2048x3-10: error flat for retain probability 0.4-0.8, underfits when almost "
              "everything is dropped; keeping p*n fixed flattens the curve (S)"),
         "(a) With n fixed, the mean test error at the smallest retain probability is higher than "
         "the lowest mean error at retain probabilities in [0.4, 0.8]; (b) with p*n fixed, the "
         "spread of the curve (largest minus smallest mean error over the grid) is smaller than "
         "with n fixed.",
         _measure_rate_curve, 45),
    Spec(4, "Data set size: dropout's gain against N", _SRIVASTAVA + ", Fig. 10",
         _pub("no gain at 100-500 examples, gain grows then shrinks with N (S); "
              "N in {100, 500, 1k, 5k, 10k, 50k}"),
         "(a) At the smallest N the paired 95% CI of the gain (error without dropout minus error "
         "with) reaches 0 or lies below it; (b) the largest mean gain is at an interior N (it "
         "grows, then shrinks).",
         _measure_data_size, 50),
    Spec(5, "MC averaging vs weight scaling", _SRIVASTAVA + ", Fig. 11",
         _pub("MNIST: about 50 sampled nets to match weight scaling; beyond that within one "
              "std (S)", **{"sampled nets to match weight scaling": 50}),
         "MC averaging with T=1 has a higher mean test error than weight scaling, and at T=50 the "
         "MC error exceeds weight scaling's by at most one standard deviation (over seeds) of the "
         "paired difference.",
         _measure_mc_vs_weight_scaling, 10),
    Spec(6, "Bernoulli vs Gaussian dropout", _SRIVASTAVA + ", Table 10",
         _pub("2x1024: Bernoulli 1.08 +- 0.04 % vs Gaussian 0.95 +- 0.04 % test error (S)",
              **{"Bernoulli (%)": 1.08, "Gaussian (%)": 0.95, "+- (%)": 0.04}),
         "Gaussian dropout's mean test error is no higher than Bernoulli dropout's at the same "
         "variance: the mean paired difference (Gaussian - Bernoulli) is <= 0.",
         _measure_bernoulli_vs_gaussian, 25),
    Spec(7, "DropConnect vs dropout; spatial dropout and DropBlock vs dropout in CNNs",
         "Wan, Zeiler, Zhang, LeCun, Fergus, \"Regularization of Neural Networks using "
         "DropConnect\", ICML 2013; Ghiasi, Lin, Le, \"DropBlock\", NeurIPS 2018, arXiv:1810.12890; "
         "Tompson, Goroshin, Jain, LeCun, Bregler, \"Efficient Object Localization Using "
         "Convolutional Networks\", CVPR 2015, arXiv:1411.4280",
         _pub("DropConnect, MNIST 784-800-800-10 without augmentation: 98.80% +- 0.034 accuracy "
              "(S). DropBlock: ResNet-50 ImageNet top-1 76.51 -> 78.13. SpatialDropout: one draw "
              "per (example, channel), applied to the whole feature map (no figure recorded)",
              **{"DropConnect MNIST accuracy (%)": 98.80, "DropConnect +- (%)": 0.034,
                 "ResNet-50 top-1 baseline (%)": 76.51, "ResNet-50 top-1 DropBlock (%)": 78.13}),
         "(a) DropConnect's mean test error is <= dropout's in the MLP; (b) spatial dropout's and "
         "(c) DropBlock's mean test errors are <= element-wise dropout's in the CNN (same rate; "
         "mean paired differences <= 0).",
         _measure_structured_dropout, 55),
    Spec(8, "Variational (locked) vs per-step dropout in a GRU",
         "Gal, Ghahramani, \"A Theoretically Grounded Application of Dropout in Recurrent Neural "
         "Networks\", NeurIPS 2016, arXiv:1512.05287",
         _pub("one mask per sequence reused at every time step on inputs, outputs and recurrent "
              "state; Penn Treebank test perplexity 73.4 (best single model)",
              **{"PTB test perplexity": 73.4}),
         "Variational (one mask per sequence) dropout's mean test error is lower than per-step "
         "dropout's at the same rate (mean paired difference < 0).",
         _measure_variational_rnn, 40),
    Spec(9, "Concrete dropout: the learned rate falls as data grows",
         "Gal, Hron, Kendall, \"Concrete Dropout\", NeurIPS 2017, arXiv:1705.07832",
         _pub("relaxed mask z = 1 - sigmoid((log p - log(1-p) + log u - log(1-u)) / t), t = 0.1; "
              "loss adds wr*||W||^2/(1-p) + dr*K*(p log p + (1-p) log(1-p)); with wr = l^2/N and "
              "dr = 2/N the learned rate falls as the data grow (no figure recorded in ANCHORS.md)",
              **{"temperature t": 0.1}),
         "The mean learned rate at the largest N is lower than at the smallest N, and the Spearman "
         "correlation between N and the mean learned rate is negative.",
         _measure_concrete_rate, 44),
    Spec(10, "Early stopping: Prechelt's GL/PQ/UP vs patience",
         "Prechelt, \"Early Stopping - but when?\", Neural Networks: Tricks of the Trade, LNCS "
         "1524, 1998",
         _pub("strip length k = 5; GL(t) = 100*(E_va/E_opt - 1); PQ: GL/P_k > alpha; UP_s: "
              "validation error rose at s successive strip ends. Slower criteria: about 4% better "
              "generalization for about 4x the training time (1296 runs)",
              **{"generalization gain of slower criteria (%)": 4, "training time ratio": 4,
                 "runs": 1296}),
         "The criterion that stops latest (mean stop epoch) reaches a mean test error no higher "
         "than the criterion that stops earliest.",
         _measure_early_stopping, 6),
    Spec(11, "Robustness to input noise and label noise",
         _SRIVASTAVA + "; Arpit et al., \"A Closer Look at Memorization in Deep Networks\", ICML "
         "2017, arXiv:1706.05394",
         _pub("dropout trains with multiplicative noise on hidden units; nets trained with it are "
              "expected to degrade less under input corruption and to memorize noisy labels less "
              "(no figure recorded in ANCHORS.md)"),
         "(a) The test accuracy lost to Gaussian input noise of std 1 (clean minus noisy, paired "
         "by seed) is smaller with dropout; (b) trained with 40% of the training labels replaced, "
         "dropout's mean test accuracy is higher than no dropout's.",
         _measure_robustness, 20),
    Spec(12, "Weight decay: AdamW vs Adam + L2 over lr x decay",
         "Loshchilov, Hutter, \"Decoupled Weight Decay Regularization\", ICLR 2019, "
         "arXiv:1711.05101",
         _pub("decoupled decay theta -= eta*(adam_step + lambda*theta) instead of an L2 term in "
              "the loss; droplab (like torch) multiplies the decay by the learning rate: theta -= "
              "lr*lambda*theta (no figure recorded in ANCHORS.md)"),
         "The best mean test error over the lr x decay grid is lower with AdamW (decoupled decay) "
         "than with Adam and an L2 penalty.",
         _measure_weight_decay, 30),
]

#: The findings by number: the twelve above, then 13-16 (dropout over time and depth,
#: :mod:`droplab.reproduce.findings_time`), added at the end of this module.
FINDINGS: dict[int, Spec] = {s.number: s for s in _SPECS}

# --- one public function per finding -------------------------------------------------------
def dropout_vs_none(ctx: Context | None = None) -> Finding:
    """Finding 1: dropout vs none on over-parameterized MLPs (Srivastava et al. 2014, Table 2).

    Runs ``FINDINGS[1]``: its criterion and published figures are in the registry.

    Args:
        ctx: sizes, seeds and data folders. Default ``Context()`` (quick, 3 seeds).

    Returns:
        The :class:`Finding` (skipped, with the reason, when its data is not installed).

    Example::

        dropout_vs_none(Context(size="smoke")).agrees
    """
    return FINDINGS[1].run(ctx if ctx is not None else Context())


def regularizer_ladder(ctx: Context | None = None) -> Finding:
    """Finding 2: the regularizer ladder (Srivastava et al. 2014, Table 9).

    Runs ``FINDINGS[2]``: its criterion and published figures are in the registry.

    Args:
        ctx: sizes, seeds and data folders. Default ``Context()`` (quick, 3 seeds).

    Returns:
        The :class:`Finding` (skipped, with the reason, when its data is not installed).

    Example::

        regularizer_ladder(Context(size="smoke")).agrees
    """
    return FINDINGS[2].run(ctx if ctx is not None else Context())


def rate_curve(ctx: Context | None = None) -> Finding:
    """Finding 3: the dropout-rate curve, n fixed vs p*n fixed (Srivastava et al. 2014, Fig. 9).

    Runs ``FINDINGS[3]``: its criterion and published figures are in the registry.

    Args:
        ctx: sizes, seeds and data folders. Default ``Context()`` (quick, 3 seeds).

    Returns:
        The :class:`Finding` (skipped, with the reason, when its data is not installed).

    Example::

        rate_curve(Context(size="smoke")).agrees
    """
    return FINDINGS[3].run(ctx if ctx is not None else Context())


def data_size(ctx: Context | None = None) -> Finding:
    """Finding 4: dropout's gain against the data set size (Srivastava et al. 2014, Fig. 10).

    Runs ``FINDINGS[4]``: its criterion and published figures are in the registry.

    Args:
        ctx: sizes, seeds and data folders. Default ``Context()`` (quick, 3 seeds).

    Returns:
        The :class:`Finding` (skipped, with the reason, when its data is not installed).

    Example::

        data_size(Context(size="smoke")).agrees
    """
    return FINDINGS[4].run(ctx if ctx is not None else Context())


def mc_vs_weight_scaling(ctx: Context | None = None) -> Finding:
    """Finding 5: MC averaging vs weight scaling as T grows (Srivastava et al. 2014, Fig. 11).

    Runs ``FINDINGS[5]``: its criterion and published figures are in the registry.

    Args:
        ctx: sizes, seeds and data folders. Default ``Context()`` (quick, 3 seeds).

    Returns:
        The :class:`Finding` (skipped, with the reason, when its data is not installed).

    Example::

        mc_vs_weight_scaling(Context(size="smoke")).agrees
    """
    return FINDINGS[5].run(ctx if ctx is not None else Context())


def bernoulli_vs_gaussian(ctx: Context | None = None) -> Finding:
    """Finding 6: Bernoulli vs Gaussian dropout (Srivastava et al. 2014, Table 10).

    Runs ``FINDINGS[6]``: its criterion and published figures are in the registry.

    Args:
        ctx: sizes, seeds and data folders. Default ``Context()`` (quick, 3 seeds).

    Returns:
        The :class:`Finding` (skipped, with the reason, when its data is not installed).

    Example::

        bernoulli_vs_gaussian(Context(size="smoke")).agrees
    """
    return FINDINGS[6].run(ctx if ctx is not None else Context())


def structured_dropout(ctx: Context | None = None) -> Finding:
    """Finding 7: DropConnect vs dropout; spatial dropout and DropBlock vs dropout in CNNs.

    Runs ``FINDINGS[7]``: its criterion and published figures are in the registry.

    Args:
        ctx: sizes, seeds and data folders. Default ``Context()`` (quick, 3 seeds).

    Returns:
        The :class:`Finding` (skipped, with the reason, when its data is not installed).

    Example::

        structured_dropout(Context(size="smoke")).agrees
    """
    return FINDINGS[7].run(ctx if ctx is not None else Context())


def variational_rnn(ctx: Context | None = None) -> Finding:
    """Finding 8: variational vs per-step dropout in a GRU (Gal & Ghahramani 2016).

    Runs ``FINDINGS[8]``: its criterion and published figures are in the registry.

    Args:
        ctx: sizes, seeds and data folders. Default ``Context()`` (quick, 3 seeds).

    Returns:
        The :class:`Finding` (skipped, with the reason, when its data is not installed).

    Example::

        variational_rnn(Context(size="smoke")).agrees
    """
    return FINDINGS[8].run(ctx if ctx is not None else Context())


def concrete_rate(ctx: Context | None = None) -> Finding:
    """Finding 9: the learned concrete-dropout rate against N (Gal, Hron & Kendall 2017).

    Runs ``FINDINGS[9]``: its criterion and published figures are in the registry.

    Args:
        ctx: sizes, seeds and data folders. Default ``Context()`` (quick, 3 seeds).

    Returns:
        The :class:`Finding` (skipped, with the reason, when its data is not installed).

    Example::

        concrete_rate(Context(size="smoke")).agrees
    """
    return FINDINGS[9].run(ctx if ctx is not None else Context())


def early_stopping(ctx: Context | None = None) -> Finding:
    """Finding 10: Prechelt's GL/PQ/UP early stopping vs patience (Prechelt 1998).

    Runs ``FINDINGS[10]``: its criterion and published figures are in the registry.

    Args:
        ctx: sizes, seeds and data folders. Default ``Context()`` (quick, 3 seeds).

    Returns:
        The :class:`Finding` (skipped, with the reason, when its data is not installed).

    Example::

        early_stopping(Context(size="smoke")).agrees
    """
    return FINDINGS[10].run(ctx if ctx is not None else Context())


def robustness(ctx: Context | None = None) -> Finding:
    """Finding 11: robustness to input noise and label noise, with and without dropout.

    Runs ``FINDINGS[11]``: its criterion and published figures are in the registry.

    Args:
        ctx: sizes, seeds and data folders. Default ``Context()`` (quick, 3 seeds).

    Returns:
        The :class:`Finding` (skipped, with the reason, when its data is not installed).

    Example::

        robustness(Context(size="smoke")).agrees
    """
    return FINDINGS[11].run(ctx if ctx is not None else Context())


def weight_decay(ctx: Context | None = None) -> Finding:
    """Finding 12: AdamW vs Adam + L2 over lr x decay (Loshchilov & Hutter 2019).

    Runs ``FINDINGS[12]``: its criterion and published figures are in the registry.

    Args:
        ctx: sizes, seeds and data folders. Default ``Context()`` (quick, 3 seeds).

    Returns:
        The :class:`Finding` (skipped, with the reason, when its data is not installed).

    Example::

        weight_decay(Context(size="smoke")).agrees
    """
    return FINDINGS[12].run(ctx if ctx is not None else Context())


# --- 13-16: dropout over time and depth (findings_time.py needs the helpers above) ------------------
from droplab.reproduce.findings_time import register as _register_time  # noqa: E402

_register_time(FINDINGS)
