"""The dropout string: one grammar for ``[model] dropout``, ``droplab train --dropout`` and
``droplab sweep --dropout``.

Grammar::

    dropout   := entry ("," entry)*
    entry     := PLACE "=" rates (":" field)*
    rates     := rate ("," rate)*           one rate sets the place; several are a sweep axis
    rate      := NUMBER ("/" NUMBER)*       per-layer rates (hidden layers, first to last)
    field     := schedules | LAYER | NAME "=" VALUE
    schedules := SCHEDULE ("," SCHEDULE)*   one sets the schedule; several are a sweep axis

A comma followed by ``NAME=`` starts a new entry; any other comma continues the entry before
it (its rates, or its list of schedules). After the rates, a field whose items are all
schedules (``early@5``, ``late@300step``, ``cosine@10``, ``depth``, ``constant``, ...; see
:mod:`droplab.nn.schedule`) may stand anywhere; two schedule fields combine (``depth:cosine@3``
is ``depth+cosine@3``). Of the other fields the first names the layer (``gaussian``,
``dropblock``, ...), the rest are its options (``block_size=5``).

Examples::

    hidden=0.3                              one place, one rate
    input=0.1,hidden=0.5/0.3:gaussian       two places; per-layer hidden rates, Gaussian layer
    hidden=0.2:dropblock:block_size=5       a layer with an option
    hidden=0.1:early@5                      a scheduled rate (Liu et al. 2023)
    hidden=0,0.1,0.2,0.3                    a sweep axis of four rates
    input=0,0.2,hidden=0,0.5                two axes
    hidden=0.1,0.3:early@5,late@5,constant  rate axis x schedule axis

``droplab train`` and ``[model] dropout`` take one rate and at most one schedule per place
(:func:`droplab.models.parse_dropout`); ``droplab sweep`` turns one value into the base
configuration and several into an axis.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterable, Mapping
from typing import Any

from droplab._checks import check_choice
from droplab.errors import ConfigError
from droplab.nn.schedule import is_schedule_text

__all__ = ["DropoutEntry", "parse_dropout_entries"]

_ENTRY = re.compile(r"\s*([A-Za-z_]\w*)\s*=(.*)", re.S)


@dataclasses.dataclass(frozen=True)
class DropoutEntry:
    """One place of a dropout string, as written.

    Attributes:
        place: where the layer goes (``input``, ``hidden``, ...).
        rates: one or more rates; each a float, or a tuple of per-layer floats.
        layer: the layer named by the first non-schedule field, or ``None``.
        options: the layer's ``name=value`` options (values as int, float, bool or str).
        schedules: the schedule alternatives (``"depth+cosine@3"`` when fields combine); empty
            when none is given.
        text: the entry as written (for messages).
    """

    place: str
    rates: tuple[float | tuple[float, ...], ...]
    layer: str | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    schedules: tuple[str, ...] = ()
    text: str = ""


def parse_dropout_entries(
    text: str, *, places: Iterable[str] | None = None, what: str = "dropout entry"
) -> dict[str, DropoutEntry]:
    """Parse a dropout string (grammar in ``droplab.models.grammar``) into its entries.

    Args:
        text: the string, e.g. ``"input=0.1,hidden=0,0.5:gaussian"``.
        places: the valid place names (checked with a did-you-mean hint); ``None`` checks none.
        what: how messages name a malformed entry (``"dropout entry"``, ``"--dropout"``).

    Returns:
        ``{place: DropoutEntry}`` in the order written; ``""`` gives ``{}``.

    Raises:
        ConfigError: a malformed entry, a place given twice, a rate that is not a number, an
            option without ``=``.

    Example:
        >>> e = parse_dropout_entries("input=0.1,hidden=0,0.5:gaussian")
        >>> e["input"].rates, e["hidden"].rates, e["hidden"].layer
        ((0.1,), (0.0, 0.5), 'gaussian')
    """
    if not isinstance(text, str):
        raise ConfigError(f"dropout must be a string like 'hidden=0.3,input=0.1', got {text!r}")
    chunks: list[str] = []
    for piece in text.split(","):
        if not piece.strip():
            continue
        if _ENTRY.match(piece) or not chunks:
            chunks.append(piece.strip())
        else:  # a comma inside an entry: more rates, or more schedules
            chunks[-1] = f"{chunks[-1]},{piece.strip()}"
    valid = None if places is None else tuple(places)
    out: dict[str, DropoutEntry] = {}
    for chunk in chunks:
        entry = _parse_entry(chunk, valid, what)
        if entry.place in out:
            raise ConfigError(f"dropout place {entry.place!r} is given twice in {text!r}")
        out[entry.place] = entry
    return out


def _parse_entry(chunk: str, places: tuple[str, ...] | None, what: str) -> DropoutEntry:
    m = _ENTRY.fullmatch(chunk)
    if m is None or not m.group(2).strip():
        raise ConfigError(
            f"cannot parse {what} {chunk!r}; expected place=rate[:layer], e.g. 'hidden=0.3:gaussian' "
            f"(a sweep axis: 'hidden=0,0.1,0.2')"
        )
    place = m.group(1)
    if places is not None:
        check_choice("dropout place", place, places)
    fields = [f.strip() for f in m.group(2).split(":")]
    rates = tuple(_rate(r, place, chunk) for r in fields[0].split(",") if r.strip())
    if not rates:
        raise ConfigError(f"{what} {chunk!r} lists no rates")
    schedule_fields: list[list[str]] = []
    others: list[str] = []
    for field in fields[1:]:
        items = [i.strip() for i in field.split(",") if i.strip()]
        if items and all(is_schedule_text(i) for i in items):
            schedule_fields.append(items)
        else:
            others.append(field)
    options = {}
    for opt in others[1:]:
        key, eq, value = opt.partition("=")
        if not eq:
            raise ConfigError(f"cannot parse option {opt!r} in {chunk!r}; expected name=value")
        options[key.strip()] = _scalar(value.strip())
    schedules = tuple("+".join(c) for c in itertools.product(*schedule_fields)) if schedule_fields else ()
    return DropoutEntry(place, rates, others[0] if others and others[0] else None, options, schedules, chunk)


def _rate(text: str, place: str, chunk: str) -> float | tuple[float, ...]:
    parts = []
    for r in text.split("/"):
        try:
            parts.append(float(r))
        except ValueError:
            raise ConfigError(
                f"cannot parse rate {r.strip()!r} for place {place!r} in {chunk!r}; "
                f"expected a number like 0.3 (per-layer: 0.5/0.3)"
            ) from None
    return parts[0] if len(parts) == 1 else tuple(parts)


def _scalar(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
