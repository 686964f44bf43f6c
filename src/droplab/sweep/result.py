"""What a sweep returns: :class:`SweepResult` (also stored as the study's summary), and its two tables.

The tables render the result as ``droplab sweep`` prints it; they live here, beside the
data, because droplab.report reads studies through droplab.sweep (its store and selection
rules) and so cannot be imported from here without an import cycle.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from droplab.stats import Estimate, compare, paired_difference, resolve_stat
from droplab.sweep import selection

__all__ = ["SweepResult", "Summary", "summarize", "small_validation"]


def _render_text(renderable: Any) -> str:
    """A rich renderable as plain text at the terminal's width (what ``print`` shows)."""
    import io
    import shutil

    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=shutil.get_terminal_size((120, 24)).columns, color_system=None,
            force_terminal=False, force_jupyter=False).print(renderable)
    return buf.getvalue().rstrip("\n")


def _render_html(renderable: Any) -> str:
    import io

    from rich.console import Console

    console = Console(file=io.StringIO(), record=True, width=140, force_jupyter=False)
    console.print(renderable)
    return console.export_html(inline_styles=True)


def _table_class():
    from rich.table import Table

    class ResultTable(Table):
        """A rich ``Table`` that also prints as a table: ``print(t)`` and ``str(t)`` render it as
        text, Jupyter shows it as HTML (``_repr_html_``); ``console.print(t)`` as before."""

        def __str__(self) -> str:
            return _render_text(self)

        def _repr_html_(self) -> str:
            return _render_html(self)

        def _repr_mimebundle_(self, include=None, exclude=None):  # noqa: ARG002 - Jupyter's protocol
            return {"text/plain": str(self), "text/html": self._repr_html_()}

    return ResultTable


@dataclasses.dataclass
class SweepResult:
    """What :func:`run_sweep` returns (and stores as the study's summary).

    Attributes:
        store: path of the study store.
        metric: the selection metric (a history key such as ``val_acc``).
        maximize: whether larger values of ``metric`` are better.
        rows: one dict per configuration: ``key``, ``params``, ``arch``, ``n`` (seeds with a
            finite metric), ``mean``, ``lo``, ``hi``, ``sd`` (95% t-interval over seeds),
            ``values`` (seed -> metric), ``diff`` (paired difference against the
            configuration without dropout: ``mean``, ``lo``, ``hi``, ``n``; None without a
            baseline), ``seconds`` and ``peak_mem_mb`` (mean per run), ``statuses``.
        best: key of the configuration with the best mean.
        one_se: key of the one-standard-error choice.
        per_arch: architecture -> key of its best configuration (with an architecture axis).
        test: selected key -> ``{"mean", "lo", "hi", "n", "values", "loss_mean", ...}`` on the
            test split (only selected configurations are ever evaluated on it).
        notes: messages about how the sweep ran (e.g. a model trained one by one, and why).
        stat: the decision rule the intervals and ``diff`` verdicts used (``"t"`` or
            ``"bootstrap"``, :func:`droplab.stats.compare`); ``stat_text`` says it in words.
            ``diff`` then also has ``p``, ``p_holm`` (Holm across the configurations sharing
            the baseline), ``decided``, ``better``, ``worse``, ``prob`` (P(better than the
            baseline)) and ``seeds_needed``.
        step_cost: configuration key -> its cost trained alone (per-step wall time and memory,
            ratio to its no-dropout baseline; :func:`droplab.sweep.cost.measure_step_costs`).
        racing: with ``seeds="auto"``, configuration key -> ``{"seeds", "why"}``: how many
            seeds it got and why it stopped there; ``{}`` otherwise.
        regularization: the sweep's regularization axes (named, by name rule, or found to set
            a droplab dropout rate): the baseline has 0 on them; the report reads them.
        small_validation: why the validation split looks too small to tell the configurations
            apart (:func:`small_validation`), else None; the table shows it.
    """

    store: str
    metric: str
    maximize: bool
    rows: list[dict[str, Any]]
    best: str | None
    one_se: str | None
    per_arch: dict[str, str]
    test: dict[str, dict[str, Any]]
    notes: list[str]
    confidence: float = 0.95
    stat: str = "t"
    stat_text: str = ""
    step_cost: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    racing: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    regularization: list[str] = dataclasses.field(default_factory=list)
    small_validation: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (what ``Store.summary()`` returns)."""
        return dataclasses.asdict(self)

    def to_frame(self):
        """The rows as a ``pandas.DataFrame``: one row per configuration (needs ``droplab[pandas]``).

        Columns: ``key``, each axis, ``n``, ``mean``, ``lo``, ``hi``, ``sd``, the paired
        difference against the baseline (``baseline``, ``diff_mean``, ``diff_lo``, ``diff_hi``,
        ``p_holm``, ``verdict``), ``seconds``, ``peak_mem_mb`` and ``selected`` (``best``,
        ``1-SE``). The metric is :attr:`metric`.

        Raises:
            ImportError: pandas is not installed (the message says how to get it).
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("SweepResult.to_frame() needs pandas: pip install 'droplab[pandas]'") from None
        axes = list(dict.fromkeys(k for r in self.rows for k in r["params"]))
        records = []
        for r in self.rows:
            d = r.get("diff") or {}
            marks = [m for m, k in (("best", self.best), ("1-SE", self.one_se)) if r["key"] == k]
            verdict = None
            if "decided" in d:
                verdict = "better" if d["better"] else "worse" if d["worse"] else "undecided"
            records.append({
                "key": r["key"], **{a: r["params"].get(a) for a in axes},
                "n": r["n"], "mean": r["mean"], "lo": r["lo"], "hi": r["hi"], "sd": r["sd"],
                "baseline": d.get("baseline"), "diff_mean": d.get("mean", math.nan), "diff_lo": d.get("lo", math.nan),
                "diff_hi": d.get("hi", math.nan), "p_holm": d.get("p_holm", math.nan), "verdict": verdict,
                "seconds": r["seconds"], "peak_mem_mb": r["peak_mem_mb"], "selected": ", ".join(marks),
            })
        return pd.DataFrame.from_records(records)

    def row(self, key: str) -> dict[str, Any]:
        """The table row of configuration ``key``."""
        for r in self.rows:
            if r["key"] == key:
                return r
        raise KeyError(key)

    def table(self):
        """The results as a table (what ``droplab sweep`` prints).

        A ``rich.table.Table`` that ``print(result.table())`` shows as a table in a terminal and
        Jupyter shows as HTML; with a :attr:`small_validation` warning as its caption.
        """
        Table = _table_class()

        pct = int(round(self.confidence * 100))
        caption = "\n".join(c for c in (self.stat_text, self.small_validation and f"warning: {self.small_validation}") if c)
        t = Table(title=f"{self.metric} ({'higher' if self.maximize else 'lower'} is better), mean and {pct}% CI over seeds",
                  caption=caption or None)
        t.add_column("configuration")
        t.add_column("n", justify="right")
        t.add_column(self.metric, justify="right")
        t.add_column(f"{pct}% CI", justify="right")
        t.add_column("vs no dropout", justify="right")
        t.add_column("s/run", justify="right")
        t.add_column("MB/run", justify="right")
        t.add_column("", justify="left")
        for r in self.rows:
            marks = []
            if r["key"] == self.best:
                marks.append("best")
            if r["key"] == self.one_se:
                marks.append("1-SE")
            if r["key"] in self.per_arch.values() and r["key"] != self.best and self.per_arch:
                marks.append("best of arch")
            diff = r.get("diff")
            diff_text = ""
            if diff is not None and diff["n"]:
                diff_text = f"{diff['mean']:+.4f}"
                if math.isfinite(diff["lo"]):
                    diff_text += f" [{diff['lo']:+.4f}, {diff['hi']:+.4f}]"
                if "decided" in diff:
                    diff_text += " better" if diff["better"] else " worse" if diff["worse"] else " undecided"
            ci = f"[{r['lo']:.4f}, {r['hi']:.4f}]" if math.isfinite(r["lo"]) else "-"
            t.add_row(
                r["key"],
                str(r["n"]),
                f"{r['mean']:.4f}" if math.isfinite(r["mean"]) else "nan",
                ci,
                diff_text,
                f"{r['seconds']:.2f}",
                f"{r['peak_mem_mb']:.1f}",
                ", ".join(marks),
            )
        return t

    def test_table(self):
        """A ``rich.table.Table`` of the selected configurations' test metrics (prints as :meth:`table`)."""
        Table = _table_class()

        # Each column is named by the value under it: ``mean`` is the task's metric (test_acc or
        # test_rmse) whatever the selection metric; a loss-selected sweep also shows test_loss.
        metric = next((info["metric"] for info in self.test.values()), self.metric.replace("val_", "test_", 1))
        with_loss = self.metric.endswith("loss") and metric != "test_loss"
        pct = int(round(self.confidence * 100))
        t = Table(title=f"test split, selected configurations only ({pct}% CI over seeds)")
        t.add_column("selected as")
        t.add_column("configuration")
        t.add_column(metric, justify="right")
        t.add_column(f"{pct}% CI", justify="right")
        if with_loss:
            t.add_column("test_loss", justify="right")
            t.add_column(f"{pct}% CI ", justify="right")
        for key, info in self.test.items():
            ci = f"[{info['lo']:.4f}, {info['hi']:.4f}]" if math.isfinite(info["lo"]) else "-"
            cells = [", ".join(info["selected_as"]), key, f"{info['mean']:.4f}", ci]
            if with_loss:
                lci = f"[{info['loss_lo']:.4f}, {info['loss_hi']:.4f}]" if math.isfinite(info["loss_lo"]) else "-"
                cells += [f"{info['loss_mean']:.4f}", lci]
            t.add_row(*cells)
        return t


def small_validation(rows: Sequence[Mapping[str, Any]], best: str | None, metric: str) -> str | None:
    """Why the validation split cannot tell the configurations apart, or None.

    Two signs, on the rows of :func:`summarize`: the best mean is tied exactly by another
    configuration (a tie-break picked "best": typical of accuracy on a few dozen examples), or
    the best's interval is wider than the spread of all the means (the seeds disagree more than
    the configurations do). Both suggest a finer metric (``val_loss``) or more validation data
    (cross-validation).

    Example:
        >>> rows = [{"key": "a", "mean": 0.97, "lo": 0.9, "hi": 1.0}, {"key": "b", "mean": 0.97, "lo": 0.9, "hi": 1.0}]
        >>> small_validation(rows, "a", "val_acc")[:40]
        'the best val_acc (0.9700) is tied by 1 o'
    """
    if best is None or len(rows) < 2:
        return None
    means = {r["key"]: r["mean"] for r in rows if math.isfinite(r["mean"])}
    if best not in means or len(means) < 2:
        return None
    top = next(r for r in rows if r["key"] == best)
    hint = ("the validation split may be too small to tell the configurations apart; select by "
            "val_loss (metric='val_loss'), or give more validation data (cross-validation: "
            "run_sweep(..., folds=5), droplab sweep --folds 5)")
    ties = [k for k, m in means.items() if k != best and m == means[best]]
    if ties:
        return f"the best {metric} ({means[best]:.4f}) is tied by {len(ties)} other configuration(s): {hint}"
    spread = max(means.values()) - min(means.values())
    width = top["hi"] - top["lo"]
    if math.isfinite(width) and width > spread:
        return (f"the best's {metric} interval ({width:.4f} wide) is wider than the spread of the means "
                f"({spread:.4f}): {hint}")
    return None


class Summary(NamedTuple):
    """What :func:`summarize` decides: the table rows, the rule, and the selected configurations."""

    rows: list[dict[str, Any]]
    stat: str  # the decision rule used ("t" or "bootstrap")
    family: int  # the largest Holm family (for the sentence naming the rule)
    best: str | None
    one_se: str | None
    per_arch: dict[str, str]


def summarize(
    configs: Mapping[str, Any],
    runs: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    metric: str,
    maximize: bool,
    confidence: float,
    stat: str | None,
    baseline: Mapping[str, str],
    regularization: Sequence[str] = (),
) -> Summary:
    """The rows of :attr:`SweepResult.rows` and the selection, from the recorded runs.

    Per configuration the metric's mean and interval over seeds
    (:func:`~droplab.sweep.selection.metric_interval`), the paired difference against its
    no-dropout baseline decided by ``stat`` (:func:`droplab.stats.compare`; each baseline's
    configurations form one Holm family), the mean cost per run; then the best configuration,
    the one-standard-error choice and, with several architectures, each one's best
    (:mod:`droplab.sweep.selection`).

    Args:
        configs: key -> resolved configuration (``params``, ``arch``, ``strength``), in sweep order.
        runs: key -> its finished runs as the store returns them (``seed``, ``status``,
            ``result``, ``cost``).
        metric, maximize: the selection metric and its direction.
        confidence: the level of the intervals.
        stat: the rule asked for (None: the default for the number of seeds).
        baseline: key -> its baseline's key (configurations with one only).
        regularization: more axes the one-SE rule may trade (:func:`~droplab.sweep.selection.one_se`).
    """
    n_seeds = min((len(runs.get(k, [])) for k in configs), default=0)
    sizes: dict[str, int] = {}
    for bkey in baseline.values():
        sizes[bkey] = sizes.get(bkey, 0) + 1
    rule = resolve_stat(stat, n_seeds, max(sizes.values(), default=1), confidence)
    estimates: dict[str, Estimate] = {}
    rows = []
    for key, r in configs.items():
        rs = runs.get(key, [])
        values = {run["seed"]: _num((run["result"] or {}).get(metric)) for run in rs}
        est = selection.metric_interval([values[s] for s in sorted(values)], metric, rule, confidence)
        estimates[key] = est
        costs = [run["cost"] or {} for run in rs]
        rows.append(
            {
                "key": key,
                "params": r.params,
                "arch": r.arch,
                "n": est.n,
                "mean": est.mean,
                "lo": est.lo,
                "hi": est.hi,
                "sd": est.sd,
                "values": {str(s): v for s, v in sorted(values.items())},
                "seconds": _mean([c.get("seconds") for c in costs]),
                "peak_mem_mb": _mean([c.get("peak_mem_mb") for c in costs]),
                "statuses": {
                    st: sum(run["status"] == st for run in rs) for st in sorted({run["status"] for run in rs})
                },
                "diff": None,
            }
        )
    # Paired differences against the same configuration without dropout.
    for row in rows:
        bkey = baseline.get(row["key"])
        if bkey is None:
            continue
        base_values = {int(s): v for s, v in _row_values(rows, bkey).items()}
        d = paired_difference({int(s): v for s, v in row["values"].items()}, base_values, confidence)
        row["diff"] = {"baseline": bkey, "mean": d.mean, "lo": d.lo, "hi": d.hi, "n": d.n}
    family = _decide(rows, rule, maximize, confidence)
    best = selection.best(estimates, maximize=maximize)
    one_se = None
    per_arch: dict[str, str] = {}
    if best is not None:
        one_se = selection.one_se(
            estimates, maximize=maximize, params={k: r.params for k, r in configs.items()},
            strength=lambda k: configs[k].strength, regularization=regularization,
        )
        archs = sorted({r.arch for r in configs.values()})
        if len(archs) > 1:
            for arch in archs:
                sub = {k: e for k, e in estimates.items() if configs[k].arch == arch}
                pick = selection.best(sub, maximize=maximize)
                if pick is not None:
                    per_arch[arch] = pick
    return Summary(rows, rule, family, best, one_se, per_arch)


def _decide(rows: list[dict[str, Any]], rule: str, maximize: bool, confidence: float) -> int:
    """The decision rule on every ``diff``: each baseline's configurations form one Holm family.

    Returns the size of the largest family (for the sentence naming the rule).
    """
    families: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["diff"] is not None:
            families.setdefault(row["diff"]["baseline"], []).append(row)
    for bkey, members in families.items():
        values = {bkey: {int(s): v for s, v in _row_values(rows, bkey).items()}}
        values.update({row["key"]: {int(s): v for s, v in row["values"].items()} for row in members})
        out = compare(values, bkey, maximize=maximize, stat=rule, confidence=confidence)
        for row in members:
            c = out[row["key"]]
            row["diff"].update(
                mean=c.diff.mean, lo=c.diff.lo, hi=c.diff.hi, n=c.n, p=c.p, p_holm=c.p_holm,
                decided=c.decided, better=c.better, worse=c.worse, prob=c.prob.mean,
                prob_lo=c.prob.lo, prob_hi=c.prob.hi, seeds_needed=c.seeds_needed,
            )
    return max((len(m) for m in families.values()), default=1)


def _row_values(rows: list[dict[str, Any]], key: str) -> dict[str, float]:
    for row in rows:
        if row["key"] == key:
            return row["values"]
    return {}


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def _mean(values: Sequence[Any]) -> float:
    vs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return math.fsum(vs) / len(vs) if vs else math.nan
