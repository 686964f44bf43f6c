"""Overhead of droplab's Trainer over a plain hand-written PyTorch loop, measured in one run.

Both train the same MLP (40 -> 256 -> 256 -> 10, ReLU, dropout 0.3, Adam lr 1e-3) on the same
random MNIST-1D-sized data (4000 x 40, 10 classes), batch 100, for the same number of epochs,
from the same initial weights. The work is the same: each epoch draws a permutation from a
seeded generator and takes the same batches, steps once per batch, accumulates the loss as a
tensor and reads it once per epoch. No per-epoch evaluation on either side (the trainer runs
with ``eval_train=False`` and no validation split); both end with one eval-mode pass over the
training data in batches of 1000, because ``Trainer.fit`` always reports final training
metrics. The timed region is the whole call on both sides (optimizer construction included),
so the ratio covers the trainer's setup (input checks, RNG fork) and its loop (callback
dispatch, history rows, timers).

Runs alternate (plain, droplab, plain, droplab, ...) so that both see the same machine load,
and each side reports its best (minimum) per-step time over the repeats, as ``timeit``
does: the minimum is the run least disturbed by other processes; medians are printed too. Torch runs on one thread.

    python benchmarks/trainer_overhead.py [--epochs 5] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from droplab.train import TrainConfig, Trainer

N, D, CLASSES, BATCH = 4000, 40, 10, 100


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(D, 256),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(256, 256),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(256, CLASSES),
    )


def plain_loop(x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> float:
    """The loop a careful user writes by hand; returns seconds for the whole run."""
    model = make_model()
    start = time.perf_counter()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(epochs):
            running = torch.zeros(())
            for idx in torch.randperm(len(x), generator=gen).split(BATCH):
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                running.add_(loss.detach(), alpha=len(idx))
            running.item()
        model.eval()
        with torch.no_grad():
            total = torch.zeros((), dtype=torch.float64)
            for start_row in range(0, len(x), 1000):
                total += F.cross_entropy(
                    model(x[start_row : start_row + 1000]),
                    y[start_row : start_row + 1000],
                    reduction="sum",
                )
            total.item()
    return time.perf_counter() - start


def droplab_loop(x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> float:
    """The same training through droplab's Trainer; returns seconds for the whole fit."""
    model = make_model()
    cfg = TrainConfig(
        optimizer="adam",
        lr=1e-3,
        epochs=epochs,
        batch_size=BATCH,
        seed=seed,
        eval_train=False,
        device="cpu",
    )
    start = time.perf_counter()
    Trainer(model, cfg).fit((x, y))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=g)
    y = torch.randint(0, CLASSES, (N,), generator=g)
    steps = args.epochs * (N // BATCH)

    # warm-up: the first optimizer construction imports parts of torch (seconds, once)
    plain_loop(x, y, 1, 0)
    droplab_loop(x, y, 1, 0)
    plain, ours = [], []
    for r in range(args.repeats):
        plain.append(plain_loop(x, y, args.epochs, r) / steps)
        ours.append(droplab_loop(x, y, args.epochs, r) / steps)
        print(
            f"repeat {r}: plain {plain[-1] * 1e3:.3f} ms/step, droplab {ours[-1] * 1e3:.3f} ms/step"
        )
    for name, pick in (("median", statistics.median), ("best", min)):
        print(
            f"{name} per step over {args.repeats} repeats of {steps} steps: "
            f"plain {pick(plain) * 1e3:.3f} ms, droplab {pick(ours) * 1e3:.3f} ms"
        )
    p, o = min(plain), min(ours)
    print(f"overhead ratio (droplab / plain loop): {o / p:.2f}")


if __name__ == "__main__":
    main()
