"""The README's main job: a dropout-rate sweep on MNIST-1D, then its HTML report.

It is ``configs/demo.toml`` run through the same functions as ``droplab sweep`` and
``droplab report``; rerunning resumes the study in ``out/demo.db`` (finished runs are kept).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEMO_CONFIG", "run_demo"]

#: The demo sweep as a ``SweepConfig`` dictionary (what ``configs/``-style TOML holds).
DEMO_CONFIG = {
    "name": "demo: hidden dropout rate, MLP 256-256 on MNIST-1D",
    "seeds": 5,
    "metric": "val_acc",
    "data": {"name": "mnist1d"},
    "model": {"kind": "mlp", "hidden": [256, 256]},
    "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 100, "epochs": 30},
    "space": {"dropout.hidden": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]},
}


def run_demo(out: str | Path = "out", *, epochs: int | None = None, seeds: int | None = None) -> int:
    """Run the demo sweep into ``out/demo.db`` and write ``out/report.html``; return 0."""
    from rich.console import Console

    from droplab.report import print_summary, write_report
    from droplab.sweep import SweepConfig, run_sweep

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = dict(DEMO_CONFIG, store=str(out / "demo.db"))
    if epochs is not None:
        config["train"] = dict(config["train"], epochs=epochs)
    if seeds is not None:
        config["seeds"] = seeds
    console = Console(stderr=True)
    run_sweep(SweepConfig.from_dict(config), console=console)
    print_summary(out / "demo.db")
    page = write_report(out / "demo.db", out / "report.html")
    print(f"report: {page}  (open it in a browser; it works offline)")
    return 0
