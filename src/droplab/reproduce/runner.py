"""Run the findings: selection, sizes, the ETA display, the terminal table, JSON and the report.

Example::

    from droplab.reproduce import reproduce
    report = reproduce([1, 5], size="quick")
    for f in report.findings:
        print(f.number, f.status, f.measured["text"])
    report.write("reproduce.html")   # and reproduce.json beside it
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import pathlib
import platform
import time
from collections.abc import Iterable, Sequence
from typing import Any

from droplab._checks import check_choice, check_positive_int
from droplab.errors import ConfigError
from droplab.reproduce.findings import FINDINGS, SIZES, Context, Finding

__all__ = ["Report", "reproduce", "parse_only", "print_table", "COST_SCALE"]

#: Multiplier of each finding's quick-run cost estimate (seconds) per size, for the ETA.
COST_SCALE = {"smoke": 0.05, "quick": 1.0, "full": 5.0}


def parse_only(text: str | None) -> list[int]:
    """``"1,3,5"`` -> ``[1, 3, 5]`` (sorted, unique); ``None`` or ``""`` -> all findings.

    Raises:
        ConfigError: a part that is not a finding number (the valid numbers are listed).
    """
    if text is None or not str(text).strip():
        return sorted(FINDINGS)
    out = set()
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part and part.count("-") == 1 and all(p.strip().isdigit() for p in part.split("-")):
            lo, hi = (int(p) for p in part.split("-"))
            numbers = range(lo, hi + 1)
        elif part.isdigit():
            numbers = [int(part)]
        else:
            numbers = [None]
        for n in numbers:
            if n not in FINDINGS:
                raise ConfigError(
                    f"--only takes finding numbers 1-{max(FINDINGS)} separated by commas "
                    f"(e.g. 1,3,5 or 2-4), got {part!r}"
                )
            out.add(n)
    if not out:
        raise ConfigError(f"--only lists no finding, got {text!r}")
    return sorted(out)


@dataclasses.dataclass
class Report:
    """The findings of one run, with what describes the run.

    Attributes:
        findings: one :class:`~droplab.reproduce.findings.Finding` per finding run, in order.
        size: ``"smoke"``, ``"quick"`` or ``"full"``.
        seeds: the seeds.
        seconds: wall time of the whole run.
        created: UTC time the run started (ISO 8601).
        machine: python, torch, platform, CPU count and torch threads used.
    """

    findings: list[Finding]
    size: str
    seeds: list[int]
    seconds: float
    created: str
    machine: dict[str, Any]

    @property
    def counts(self) -> dict[str, int]:
        """How many findings agree, disagree and were skipped."""
        out = {"agrees": 0, "disagrees": 0, "skipped": 0}
        for f in self.findings:
            out[f.status] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        """The whole run as a JSON-ready dict (figure data included)."""
        from droplab import __version__

        return {
            "droplab": __version__,
            "size": self.size,
            "seeds": list(self.seeds),
            "seconds": round(self.seconds, 2),
            "created": self.created,
            "machine": self.machine,
            "counts": self.counts,
            "findings": [f.to_dict(plot=True) for f in self.findings],
        }

    def json_lines(self) -> list[str]:
        """One JSON object per finding (what ``droplab reproduce --json`` prints)."""
        return [json.dumps(f.to_dict(), allow_nan=False) for f in self.findings]

    def table(self):
        """A ``rich.table.Table``: published vs measured vs agrees, one row per finding."""
        from rich.table import Table

        t = Table(
            title=f"droplab reproduce ({self.size}, {len(self.seeds)} seeds): "
            f"{self.counts['agrees']} agree, {self.counts['disagrees']} disagree, "
            f"{self.counts['skipped']} skipped, {self.seconds:.0f} s",
            show_lines=True,
        )
        t.add_column("#", justify="right", no_wrap=True)
        t.add_column("finding (source)", ratio=2)
        t.add_column("published", ratio=3)
        t.add_column("droplab measured (mean [95% CI] over seeds)", ratio=4)
        t.add_column("agrees", no_wrap=True)
        colors = {"agrees": "green", "disagrees": "red", "skipped": "yellow"}
        words = {"agrees": "yes", "disagrees": "NO", "skipped": "skipped"}
        for f in self.findings:
            measured = f.measured["text"] if f.skipped is None else f"skipped: {f.skipped}"
            t.add_row(
                str(f.number),
                f"{f.name}\n[dim]{f.citation}[/dim]",
                f.published["text"],
                measured,
                f"[{colors[f.status]}]{words[f.status]}[/]",
            )
        return t

    def write(self, html_path: str | os.PathLike[str]) -> tuple[pathlib.Path, pathlib.Path]:
        """Write the HTML report and, beside it, the JSON (same name, ``.json``).

        Returns:
            ``(html path, json path)``.

        Raises:
            StoreError: a file cannot be written.
        """
        from droplab.reproduce.html import render_page, write_page

        return write_page(html_path, render_page(self), json.dumps(self.to_dict(), indent=1, allow_nan=False))


def _machine(threads: int) -> dict[str, Any]:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(terse=True),
        "cpus": os.cpu_count(),
        "torch_threads": threads,
    }


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(max(0.0, seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s"


class _Display:
    """The live progress bar (terminals) and one line per finished finding (always)."""

    def __init__(self, console: Any, total: float, n: int, enabled: bool) -> None:
        self.console = console
        self.total = total
        self.n = n
        self.progress = None
        self.task = None
        self.t0 = time.perf_counter()
        if enabled and console is not None and console.is_terminal:
            from rich.progress import (
                BarColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("[bold]reproduce[/bold] {task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )

    def __enter__(self) -> _Display:
        if self.progress is not None:
            self.progress.__enter__()
            self.task = self.progress.add_task("", total=self.total)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def update(self, completed: float, description: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=completed, description=description)

    def finished(self, i: int, finding: Finding, done: float) -> None:
        if self.console is None:
            return
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / done * (self.total - done) if done > 0 else math.nan
        style = {"agrees": "green", "disagrees": "red", "skipped": "yellow"}[finding.status]
        line = (
            f"[{i}/{self.n}] finding {finding.number}: {finding.name} -- "
            f"[{style}]{finding.status}[/] ({finding.seconds:.1f} s); elapsed {_clock(elapsed)}"
        )
        if i < self.n:
            line += f", ETA {_clock(eta)}"
        if self.progress is not None:
            self.progress.console.print(line, highlight=False)
        else:
            self.console.print(line, highlight=False)


def reproduce(
    numbers: Iterable[int] | None = None,
    *,
    size: str = "quick",
    seeds: int | Sequence[int] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    threads: int | None = 1,
    console: Any = None,
    progress: bool = True,
) -> Report:
    """Rerun the published findings offline and compare their shapes with the papers'.

    Each finding trains its arms with every seed, measures, and applies the criterion it
    declared before running (see :mod:`droplab.reproduce.findings`). A finding whose dataset is
    not installed is skipped with a message saying how to install it.

    Args:
        numbers: which findings (1..16); default all.
        size: ``"smoke"`` (seconds each, for tests), ``"quick"`` (all of them in a few minutes on
            two CPU cores) or ``"full"`` (more seeds, epochs and grid points). Default quick.
        seeds: number of seeds (``0..n-1``) or the seeds; default 2 / 3 / 5 by size.
        data_dir: folder with the Fashion-MNIST idx files (default: the usual search).
        cache_dir: droplab's cache folder (MNIST-1D). Default: the usual one.
        threads: torch intra-op threads during the run (restored afterwards); 1 is fastest for
            these small models on a shared machine; ``None`` leaves torch's setting. Default 1.
        console: a ``rich.console.Console`` for progress lines (default: stderr).
        progress: show progress (a live bar with the ETA on terminals, one line per finding).

    Returns:
        A :class:`Report`.

    Example::

        report = reproduce([5], size="smoke")
        report.findings[0].agrees
    """
    import torch

    check_choice("size", size, SIZES)
    chosen = sorted(FINDINGS) if numbers is None else sorted(set(numbers))
    for n in chosen:
        if n not in FINDINGS:
            raise ConfigError(f"finding numbers are 1-{max(FINDINGS)}, got {n!r}")
    if isinstance(seeds, bool):
        raise ConfigError(f"seeds must be a positive count or a list of seeds, got {seeds!r}")
    if isinstance(seeds, int):
        seed_list: list[int] | None = list(range(check_positive_int("seeds", seeds)))
    elif seeds is None:
        seed_list = None
    else:
        seed_list = list(seeds)
        if not seed_list or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seed_list):
            raise ConfigError(f"seeds must be non-negative integers, got {seed_list!r}")
    if threads is not None:
        check_positive_int("threads", threads)
    if console is None and progress:
        from rich.console import Console

        console = Console(stderr=True)
        if not console.is_terminal:  # captured: whole lines, never folded at 80 columns
            console = Console(stderr=True, width=200)
    ctx = Context(size=size, seeds=seed_list,
                  data_dir=None if data_dir is None else os.fspath(data_dir),
                  cache_dir=None if cache_dir is None else os.fspath(cache_dir))
    costs = {n: FINDINGS[n].cost * COST_SCALE[size] for n in chosen}
    total = sum(costs.values())
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    findings: list[Finding] = []
    try:
        with _Display(console if progress else None, total, len(chosen), progress) as display:
            done = 0.0
            for i, n in enumerate(chosen, 1):
                spec = FINDINGS[n]
                label = f"{i}/{len(chosen)}: {spec.name}"
                base = done
                ctx.progress = lambda f, base=base, n=n, label=label: display.update(
                    base + f * costs[n], label)
                display.update(base, label)
                finding = spec.run(ctx)
                findings.append(finding)
                done = base + costs[n]
                display.update(done, label)
                display.finished(i, finding, done)
    finally:
        if threads is not None:
            torch.set_num_threads(old_threads)
    return Report(
        findings=findings,
        size=size,
        seeds=list(ctx.seeds),
        seconds=time.perf_counter() - t0,
        created=created,
        machine=_machine(threads if threads is not None else old_threads),
    )


def print_table(report: Report, console: Any = None) -> None:
    """Print the table of findings (published vs measured vs agrees) and each one's criterion.

    Args:
        report: what :func:`reproduce` returned.
        console: a ``rich.console.Console``; default stdout (200 columns when not a terminal,
            so that captured output keeps whole lines).
    """
    from rich.console import Console

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=200)
    console.print(report.table())
    for f in report.findings:
        if f.skipped is None:
            console.print(f"[bold]{f.number}.[/bold] criterion: {f.criterion}", highlight=False)
            for note in f.notes:
                console.print(f"    - {note}", highlight=False)
