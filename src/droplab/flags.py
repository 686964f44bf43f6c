"""The data, model and training flags of ``droplab train`` and ``droplab sweep``: one table,
and how their values become a configuration.

Each flag in :data:`FLAGS` sets one key of a run or sweep file (``--val-fraction`` sets
``[data] val_fraction``); both commands take the same flags, except ``--seed`` (``train`` only:
a sweep has ``--seeds``). Flags override a TOML file key by key.

One rule for lists, in ``droplab sweep``: the flags shown with ``LIST`` (``--dropout``, ``--lr``,
``--weight-decay``, ``--l1``, ``--l2``, ``--max-norm``) take comma-separated values, and **one
value sets the base configuration, two or more make an axis**: ``--lr 1e-2`` sets ``[train] lr``,
``--lr 1e-3,1e-2`` sweeps it. ``--dropout`` follows the dropout grammar
(``droplab.models.grammar``) and the same rule per place, for its rates and its schedules.
``--axis NAME=VALUES`` always makes an axis. A flag replaces what the file says for its key,
the file's axis of that name included (``--dropout hidden=...`` also replaces a whole-string
``dropout`` axis). ``droplab train`` takes one value per flag. A key set by two flags
(``--lr 0.1 --axis train.lr=0.1,0.2``, one place in two ``--dropout`` flags) is a
:class:`~droplab.errors.ConfigError`.

Example:
    >>> sweep_overrides({"lr": "1e-2", "l2": "0,1e-4", "dropout": ["hidden=0,0.5"], "epochs": 2})
    {'train': {'lr': 0.01, 'epochs': 2}, 'space': {'train.l2': [0, 0.0001], 'dropout.hidden': [0.0, 0.5]}}
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from droplab.errors import ConfigError

__all__ = ["Flag", "FLAGS", "add_flags", "run_overrides", "sweep_overrides"]


def _int_list(text: str) -> list[int]:
    """``"256,256"`` -> ``[256, 256]`` (sizes, kernel sizes, strides)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}")
    return values


@dataclasses.dataclass(frozen=True)
class Flag:
    """One flag: its name, the key it sets, how one value is read, and its help.

    Attributes:
        name: the flag (``"--val-fraction"``); its argparse destination drops the dashes.
        key: ``"section.key"`` it sets (``"data.val_fraction"``).
        type: reads one value (``float``, ``int``, ``str``, ``_int_list``, ``bool`` for an
            on/off flag with a ``--no-`` form).
        help: one line.
        group: ``"data"``, ``"model"`` or ``"training"`` (the --help section).
        commands: the commands that take it.
        lists: in ``droplab sweep``, a comma-separated list (one value: the base; more: an axis).
        metavar: the value's name in ``--help`` (default: the destination in capitals).
    """

    name: str
    key: str
    type: Callable[[str], Any]
    help: str
    group: str
    commands: tuple[str, ...] = ("train", "sweep")
    lists: bool = False
    metavar: str | None = None

    @property
    def dest(self) -> str:
        """The argparse destination: the name without dashes (``val_fraction``)."""
        return self.name.lstrip("-").replace("-", "_")


def _data(name: str, key: str, type: Callable[[str], Any], help: str, **kw: Any) -> Flag:
    return Flag(name, f"data.{key}", type, help, "data", **kw)


def _model(name: str, key: str, type: Callable[[str], Any], help: str, **kw: Any) -> Flag:
    return Flag(name, f"model.{key}", type, help, "model", **kw)


def _train(name: str, key: str, type: Callable[[str], Any], help: str, **kw: Any) -> Flag:
    return Flag(name, f"train.{key}", type, help, "training", **kw)


#: Every data, model and training flag of ``droplab train`` and ``droplab sweep``.
FLAGS: tuple[Flag, ...] = (
    _data("--dataset", "name", str, "mnist1d (default), fashion_mnist, digits, breast_cancer, wine, iris, "
          "diabetes, sine, csv, npz"),
    _data("--data-dir", "data_dir", str, "folder holding the dataset files (fashion_mnist)"),
    _data("--data", "path", str, "file for --dataset csv or npz", metavar="PATH"),
    _data("--target", "target", str, "target column of a CSV file"),
    _data("--task", "task", str, "classification, binary (a two-valued target, one logit, BCE) or regression (default: inferred and "
          "said on stderr: integer labels exactly 0..K-1 are classes; 1..K, gaps, counts and floats regression)"),
    _data("--val-fraction", "val_fraction", float, "fraction of the training data held out for validation (default 0.1)"),
    _data("--data-seed", "seed", int, "seed of the split, subsample and corruptions (train: default --seed; sweep: 0)"),
    _data("--subsample", "subsample", int, "keep this many training examples"),
    _data("--label-noise", "label_noise", float, "fraction of training labels replaced"),
    _data("--input-noise", "input_noise", float, "std of Gaussian noise added to training inputs"),
    _model("--model", "kind", str, "kind: mlp, cnn1d, cnn2d, gru, lstm, transformer"),
    _model("--hidden", "hidden", _int_list, "layer sizes, e.g. 256,256"),
    _model("--activation", "activation", str, "relu, tanh, gelu, selu, sigmoid, elu"),
    _model("--batch-norm", "batch_norm", bool, "BatchNorm layers"),
    _model("--dropout", "dropout", str, "placement, e.g. hidden=0.3,input=0.1 or hidden=0.3:gaussian; a schedule "
           "field: hidden=0.1:early@5, hidden=0.2:droppath:depth; sweep: lists, hidden=0,0.1,0.2 "
           "(repeatable; grammar in droplab.models.grammar)", lists=True),
    _model("--kernel-size", "kernel_size", _int_list, "CNN kernel size(s), e.g. 5 or 5,3,3"),
    _model("--stride", "stride", _int_list, "CNN stride(s)"),
    _model("--padding", "padding", _int_list, "CNN padding(s)"),
    _train("--optimizer", "optimizer", str, "sgd, adam (default), adamw, rmsprop"),
    _train("--lr", "lr", float, "learning rate", lists=True),
    _train("--momentum", "momentum", float, "momentum (sgd, rmsprop)"),
    _train("--weight-decay", "weight_decay", float, "decoupled weight decay on weights (sgd, adamw)", lists=True),
    _train("--l1", "l1", float, "L1 penalty strength on weights", lists=True),
    _train("--l2", "l2", float, "L2 penalty strength on weights (no 1/2)", lists=True),
    _train("--max-norm", "max_norm", float, "max-norm bound c on incoming weight vectors", lists=True),
    _train("--lr-schedule", "lr_schedule", str, "constant (default), step, cosine, onecycle"),
    _train("--early-stopping", "early_stopping", str, "patience, gl, pq or up (Prechelt 1998)"),
    _train("--patience", "patience", int, "epochs without improvement (--early-stopping patience)"),
    _train("--epochs", "epochs", int, "number of epochs"),
    _train("--batch-size", "batch_size", int, "examples per step"),
    _train("--seed", "seed", int, "seed of the data split, initial weights, order and masks (default 0)",
           commands=("train",)),
    _train("--device", "device", str, "auto (default), cpu, cuda"),
    _train("--rdrop", "rdrop", float, "R-Drop: two dropout passes, + ALPHA x symmetric KL (Liang et al. 2021)",
           metavar="ALPHA"),
)

def add_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """Add the flags of ``command`` (``"train"`` or ``"sweep"``) to ``parser``, in three groups."""
    groups: dict[str, Any] = {}
    for flag in FLAGS:
        if command not in flag.commands:
            continue
        g = groups.get(flag.group) or groups.setdefault(flag.group, parser.add_argument_group(flag.group))
        if flag.type is bool:
            g.add_argument(flag.name, action=argparse.BooleanOptionalAction, default=None, help=flag.help)
        elif flag.name == "--dropout":
            action = "append" if command == "sweep" else "store"
            metavar = "PLACE=LIST[:LAYER][:SCHEDULES]" if command == "sweep" else None
            g.add_argument(flag.name, action=action, metavar=metavar, help=flag.help)
        elif flag.lists and command == "sweep":
            g.add_argument(flag.name, metavar="LIST", help=f"{flag.help}: one value or a list (an axis)")
        else:
            g.add_argument(flag.name, type=flag.type, metavar=flag.metavar, help=flag.help)


def _set(out: dict[str, Any], key: str, value: Any) -> None:
    section, name = key.split(".", 1)
    if name in ("kernel_size", "stride", "padding") and len(value) == 1:
        value = value[0]
    out.setdefault(section, {})[name] = value


def run_overrides(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``droplab train``: ``{section: {key: value}}`` from the flag values given (``None``: not given).

    Example:
        >>> run_overrides({"lr": 0.1, "val_fraction": 0.2, "kernel_size": [5]})
        {'data': {'val_fraction': 0.2}, 'model': {'kernel_size': 5}, 'train': {'lr': 0.1}}
    """
    out: dict[str, dict[str, Any]] = {"data": {}, "model": {}, "train": {}}
    for flag in FLAGS:
        if "train" in flag.commands and values.get(flag.dest) is not None:
            _set(out, flag.key, values[flag.dest])
    return out


def sweep_overrides(values: Mapping[str, Any], axes: Sequence[str] = ()) -> dict[str, Any]:
    """``droplab sweep``: sections and ``space`` from the flag values given (``None``: not given).

    Args:
        values: flag destination -> value: text for list flags (``"lr": "1e-3,1e-2"``), a list
            of texts for ``dropout``, typed values for the others.
        axes: ``--axis NAME=VALUES`` texts (each always an axis).

    Raises:
        ConfigError: a key set twice, a malformed list or dropout text.
    """
    from droplab.models import PLACES, parse_dropout_entries
    from droplab.sweep.config import parse_axis_flag, parse_values

    out: dict[str, Any] = {}
    space: dict[str, Any] = {}
    given: dict[str, str] = {}  # key -> the flag that set it, for conflicts

    def claim(key: str, by: str) -> None:
        if key in given:
            raise ConfigError(f"{key} is set twice: by {given[key]} and by {by}; give it once")
        given[key] = by

    for flag in FLAGS:
        value = values.get(flag.dest)
        if "sweep" not in flag.commands or value is None or flag.dest == "dropout":
            continue
        claim(flag.key, flag.name)
        if flag.lists:
            items = parse_values(value) if isinstance(value, str) else [value]
            if len(items) > 1:
                space[flag.key] = items
                continue
            value = items[0]
        _set(out, flag.key, value)
    for text in values.get("dropout") or []:
        for place, e in parse_dropout_entries(text, places=PLACES, what="--dropout").items():
            claim(f"dropout.{place}", f"--dropout {text}")
            rates = [list(r) if isinstance(r, tuple) else r for r in e.rates]
            base: dict[str, Any] = {"p": rates[0] if len(rates) == 1 else 0.0}
            if len(rates) > 1:
                space[f"dropout.{place}"] = rates
            if len(e.schedules) > 1:
                claim(f"dropout.{place}.schedule", f"--dropout {text}")
                space[f"dropout.{place}.schedule"] = list(e.schedules)
            elif e.schedules:
                base["schedule"] = e.schedules[0]
            if e.layer is not None:
                base["layer"] = e.layer
            if e.options:
                base["options"] = dict(e.options)
            if len(rates) == 1 or len(base) > 1:
                out.setdefault("model", {}).setdefault("dropout", {})[place] = base
    for text in axes:
        name, items = parse_axis_flag(text)
        claim(name, f"--axis {text}")
        space[name] = items
    if "dropout" in given and any(k.startswith("dropout.") for k in given):
        raise ConfigError("--axis dropout=... sweeps whole dropout strings; it cannot be combined with --dropout")
    if space:
        out["space"] = space
    return out
