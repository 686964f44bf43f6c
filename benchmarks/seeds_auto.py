"""``--seeds auto`` against fixed seeds on the demo grid: same selected rate, how many runs.

Runs the demo's sweep (``droplab.demo.DEMO_CONFIG``: hidden dropout rate 0-0.5, MLP 256-256 on
MNIST-1D) twice into ``OUT``: once with ``seeds = "auto"`` (racing, at most ``--max-seeds``),
once with ``--max-seeds`` fixed seeds, and prints each one's selected configuration and total
runs. Both studies are kept (rerunning resumes them). ``--epochs`` shortens the training (the
demo's own 30 by default); ``--threads`` sets torch's CPU threads.

    python benchmarks/seeds_auto.py [--out out/seeds_auto] [--max-seeds 20] [--epochs 30] [--threads 1]

The last line: ``ratio vs fixed seeds (runs): N.NN``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from droplab.demo import DEMO_CONFIG
from droplab.sweep import SweepConfig, run_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/seeds_auto")
    parser.add_argument("--max-seeds", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = dict(DEMO_CONFIG)
    if args.epochs is not None:
        base["train"] = dict(base["train"], epochs=args.epochs)
    results = {}
    for name, seeds in (("auto", "auto"), ("fixed", args.max_seeds)):
        cfg = dict(base, seeds=seeds, max_seeds=args.max_seeds, store=str(out / f"{name}.db"),
                   name=f"{base['name']} ({name} seeds)")
        t0 = time.perf_counter()
        res = run_sweep(SweepConfig.from_dict(cfg), progress=False)
        runs = sum(sum(r["statuses"].values()) for r in res.rows)
        results[name] = (res, runs)
        print(f"{name:>5}: selected {res.best}, {runs} runs, {res.stat_text}, {time.perf_counter() - t0:.0f} s")
        if name == "auto":
            for key, info in res.racing.items():
                print(f"       {key}: {info['seeds']} seeds -- {info['why']}")
    same = results["auto"][0].best == results["fixed"][0].best
    print(f"same selected configuration: {same}")
    print(f"ratio vs fixed seeds (runs): {results['auto'][1] / results['fixed'][1]:.2f}")


if __name__ == "__main__":
    main()
