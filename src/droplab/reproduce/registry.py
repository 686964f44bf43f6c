"""The records of a reproduced finding and the registry's building blocks.

- :class:`Spec` -- a finding as declared before it runs: number, name, citation, the published
  text and numbers (from ``ANCHORS.md``; ``(S)`` marks kept: confirmed only through agreeing
  secondary copies) and the *criterion*, the exact test of the published shape that decides
  ``agrees``, fixed in code before anything runs. Its measure trains what the finding needs
  with every seed, measures, applies the criterion and returns an :class:`Outcome`; a
  disagreement is returned as such, nothing is retried or tuned.
- :class:`Finding` -- one result; :class:`Context` -- sizes, seeds, data folders.
- :func:`finding_function` -- the public ``name(ctx=None)`` function of a registered finding.

The findings themselves live one family per module (``findings_srivastava``,
``findings_variants``, ``findings_training``, ``findings_time``); :mod:`droplab.reproduce.findings`
collects them into :data:`~droplab.reproduce.FINDINGS`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from droplab._checks import check_choice
from droplab.reproduce._train import Skip
from droplab.stats import resolve_stat, rule_text

__all__ = ["SIZES", "Finding", "Context", "Spec", "Outcome", "pub", "finding_function"]

#: Run sizes: ``smoke`` (seconds per finding, for tests), ``quick`` (all of them in a few
#: minutes on two CPU cores) and ``full`` (more seeds, epochs and grid points).
SIZES = ("smoke", "quick", "full")

_DEFAULT_SEEDS = {"smoke": 2, "quick": 3, "full": 5}


# --- records --------------------------------------------------------------------------------------
@dataclasses.dataclass
class Finding:
    """One finding: the published figure, droplab's measurement, and whether the shapes agree.

    Attributes:
        number: 1..16, the order of the issues that asked for them.
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
    func: Callable[[Context], Outcome]
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
class Outcome:
    """What a finding's measure returns: the one-line text, the estimates, the verdict, the
    setting, notes and the figure data (:meth:`Spec.run` turns it into a :class:`Finding`)."""

    text: str
    values: dict[str, Any]
    agrees: bool
    setting: str
    notes: list[str] = dataclasses.field(default_factory=list)
    plot: dict[str, Any] | None = None


def pub(text: str, **numbers: Any) -> dict[str, Any]:
    """The ``published`` record of a :class:`Spec`: the text and its numbers by label."""
    return {"text": text, "numbers": numbers}


def finding_function(spec: Spec, name: str, summary: str) -> Callable[[Context | None], Finding]:
    """The public function that runs ``spec``: ``name(ctx=None) -> Finding``.

    Args:
        spec: the registered finding.
        name: the function's name (``dropout_vs_none``).
        summary: the docstring's first line.

    Example::

        dropout_vs_none = finding_function(FINDINGS[1], "dropout_vs_none", "Finding 1: ...")
        dropout_vs_none(Context(size="smoke")).agrees
    """

    def run(ctx: Context | None = None) -> Finding:
        return spec.run(ctx if ctx is not None else Context())

    run.__name__ = run.__qualname__ = name
    run.__module__ = "droplab.reproduce.findings"  # where the functions are published
    run.__doc__ = f"""{summary}

    Runs ``FINDINGS[{spec.number}]``: its criterion and published figures are in the registry.

    Args:
        ctx: sizes, seeds and data folders. Default ``Context()`` (quick, 3 seeds).

    Returns:
        The :class:`Finding` (skipped, with the reason, when its data is not installed).

    Example::

        {name}(Context(size="smoke")).agrees
    """
    return run
