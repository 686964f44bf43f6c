"""A deep ensemble of 5 MLPs trained as one population against 5 trained one after another.

Both sides train the same 5 members -- droplab's MLP 40 -> 256 -> 256 -> 10 with hidden dropout
0.1 (``ModelSpec(kind="mlp", hidden=(256, 256), dropout={"hidden": 0.1})``), seeds 0..4, Adam
lr 1e-3, batch 100 -- on MNIST-1D (4000 x 40, the offline generator), for the same epochs,
without per-epoch evaluation of the training split. The sequential side is
:class:`droplab.train.Trainer` on each member in turn (``build_model(spec, seed=s)``,
``TrainConfig(seed=s)``); the population side is :func:`droplab.ensemble` (one vectorized
run). Each side is timed as a whole (model construction included); they alternate over the
repeats and report their minimum (as ``timeit``), medians printed too. The test accuracy of
each ensemble's averaged probabilities is printed as a sanity check (same recipe, so they must
be close; they are not bitwise equal: different kernels and mask streams).

    python benchmarks/ensemble.py [--epochs 5] [--repeats 3]

Last line: ``ratio vs 5 sequential MLPs: N.NN`` (sequential time / population time; the
issue's target is >= 2, "less than half the time").
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

import droplab
from droplab.data import load_dataset
from droplab.models import ModelSpec, build_model
from droplab.train import TrainConfig, Trainer

MEMBERS = 5


def sequential(spec, splits, cfg) -> tuple[float, float]:
    t0 = time.perf_counter()
    probs = 0
    for s in range(MEMBERS):
        model = build_model(spec, splits.input_shape, splits.n_outputs, seed=s)
        Trainer(model, cfg.replace(seed=s)).fit(splits)
        model.eval()
        with torch.no_grad():
            probs = probs + model(splits.x_test).softmax(-1)
    seconds = time.perf_counter() - t0
    return seconds, float((probs.argmax(1) == splits.y_test).double().mean())


def population(spec, splits, cfg) -> tuple[float, float]:
    t0 = time.perf_counter()
    deep = droplab.ensemble(spec, splits, members=MEMBERS, train=cfg)
    with torch.no_grad():
        probs = deep(splits.x_test)
    seconds = time.perf_counter() - t0
    return seconds, float((probs.argmax(1) == splits.y_test).double().mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    splits = load_dataset("mnist1d", seed=0)
    spec = ModelSpec(kind="mlp", hidden=(256, 256), dropout={"hidden": 0.1})
    cfg = TrainConfig(epochs=args.epochs, lr=1e-3, batch_size=100, eval_train=False, device="cpu")
    times: dict[str, list[float]] = {"sequential": [], "population": []}
    acc = {}
    for _ in range(args.repeats):
        for name, fn in (("sequential", sequential), ("population", population)):
            seconds, acc[name] = fn(spec, splits, cfg)
            times[name].append(seconds)
    print(f"{MEMBERS} MLPs 40-256-256-10, MNIST-1D 4000 train, {args.epochs} epochs, "
          f"torch threads {torch.get_num_threads()}")
    for name in ("sequential", "population"):
        print(f"{name:10s} min {min(times[name]):.2f} s  median {statistics.median(times[name]):.2f} s  "
              f"ensemble test acc {acc[name]:.3f}")
    print(f"ratio vs 5 sequential MLPs: {min(times['sequential']) / min(times['population']):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
