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

__all__ = ["SweepResult", "Summary", "summarize"]


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

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (what ``Store.summary()`` returns)."""
        return dataclasses.asdict(self)

    def row(self, key: str) -> dict[str, Any]:
        """The table row of configuration ``key``."""
        for r in self.rows:
            if r["key"] == key:
                return r
        raise KeyError(key)

    def table(self):
        """A ``rich.table.Table`` of the results (what ``droplab sweep`` prints)."""
        from rich.table import Table

        pct = int(round(self.confidence * 100))
        t = Table(title=f"{self.metric} ({'higher' if self.maximize else 'lower'} is better), mean and {pct}% CI over seeds",
                  caption=self.stat_text or None)
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
        """A ``rich.table.Table`` of the selected configurations' test metrics."""
        from rich.table import Table

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
