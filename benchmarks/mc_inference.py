"""MC dropout inference: the cached-and-batched path against a loop of T forward passes.

The model is the Keras ``mnist_cnn`` example network on Fashion-MNIST-sized inputs
(1 x 28 x 28): conv 32 3x3, ReLU, conv 64 3x3, ReLU, max-pool 2, dropout 0.25, flatten,
Linear 9216 -> 128, ReLU, dropout 0.5, Linear 128 -> 10 -- dropout after a conv stack, the case
baal's PR #254 speeds up (cache the layers before the first dropout layer). Inputs are random
(the work does not depend on the values); the weights are random too.

Both sides are :func:`droplab.inference.mc_predict` with T = 50, one seed, one chunk size:
``cache=False`` is the plain loop (each chunk through T full forward passes, running moments);
the default runs the conv stack once per chunk and the remaining passes stacked within the
memory budget. The outputs (mean, variance, entropies, mutual information, every pass's
probabilities) must be bitwise equal, or the script exits 1. Runs alternate (naive, cached,
naive, cached, ...); each side reports its minimum over the repeats (as ``timeit`` does),
medians printed too. Torch runs on its default threads.

    python benchmarks/mc_inference.py [--n 256] [--samples 50] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch import nn

from droplab.inference import mc_predict

FIELDS = ("mean", "variance", "predictive_entropy", "expected_entropy", "mutual_information", "draws")


def make_cnn() -> nn.Module:
    """The Keras mnist_cnn example network (dropout after the conv stack)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Dropout(0.25), nn.Flatten(), nn.Linear(64 * 12 * 12, 128), nn.ReLU(),
            nn.Dropout(0.5), nn.Linear(128, 10),
        ).eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="test inputs (default 256)")
    ap.add_argument("--samples", type=int, default=50, help="passes T (default 50)")
    ap.add_argument("--batch-size", type=int, default=256, help="chunk size (default 256)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per side (default 3)")
    args = ap.parse_args(argv)
    model = make_cnn()
    x = torch.randn(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    kw = dict(samples=args.samples, seed=0, batch_size=args.batch_size, draws=True)
    mc_predict(model, x[:8], samples=2, seed=0)  # warm-up (allocator, thread pool)
    times: dict[str, list[float]] = {"naive": [], "cached": []}
    results = {}
    for _ in range(args.repeats):
        for name, cache in (("naive", False), ("cached", True)):
            t0 = time.perf_counter()
            results[name] = mc_predict(model, x, cache=cache, **kw)
            times[name].append(time.perf_counter() - t0)
    naive, cached = results["naive"], results["cached"]
    equal = all(torch.equal(getattr(naive, f), getattr(cached, f)) for f in FIELDS)
    print(f"model: Keras mnist_cnn, inputs {args.n} x 1 x 28 x 28, T={args.samples}, "
          f"chunk {args.batch_size}, torch threads {torch.get_num_threads()}")
    print(f"cached submodules: {', '.join(cached.cached) or 'none'}")
    for name in ("naive", "cached"):
        print(f"{name:7s} min {min(times[name]):.3f} s  median {statistics.median(times[name]):.3f} s")
    print(f"outputs bitwise equal (mean, variance, entropies, MI, all {args.samples} draws): {equal}")
    if not equal:
        print("FAIL: the cached path changed the result", file=sys.stderr)
        return 1
    print(f"ratio vs naive MC (T={args.samples}): {min(times['naive']) / min(times['cached']):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
