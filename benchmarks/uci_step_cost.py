"""CPU cost per training step of the UCI protocol's two populations (grid and retrain).

For each data set named on the command line: the grid population (every split x rate x tau, on
the inner training rows) and the retrain population (one member per split, on all training
rows), built as ``droplab.reproduce.uci`` builds them, one warm-up epoch, then ``--epochs``
epochs timed as process CPU time on ``--threads`` threads. Prints ms per step and the
projected CPU seconds of the published protocol's training (epochs x steps x ms/step).

    .venv/bin/python benchmarks/uci_step_cost.py kin8nm naval power protein --epochs 2
"""

from __future__ import annotations

import argparse
import time

import torch

from droplab.data.uci import load_uci
from droplab.reproduce import uci as U
from droplab.sweep.population import Member, MLPNet, Population
from droplab.train import TrainConfig


def population(part, points, hidden):
    n = part.x.shape[1]
    base = TrainConfig(optimizer="adam", lr=1e-3, epochs=10**6, batch_size=128, eval_train=False, seed=None,
                       device="cpu")
    members = [Member(key=f"split={g} p={p} tau={tau}", params={"group": g, "p": p, "tau": tau}, seed=g,
                      train=base.replace(l2=(1.0 - p) / (2.0 * n * tau)), rates=(p, p)) for g, p, tau in points]
    net = MLPNet(U._spec(hidden, True), (part.x.shape[2],), 1, members)
    return Population(net, members, (part.x, part.y, part.x[:, :0], part.y[:, :0]), "regression",
                      groups=[g for g, _, _ in points], history=False)


def cost(pop, epochs):
    pop.run_epoch()  # warm-up (builds the kernel on first use)
    t0 = time.process_time()
    for _ in range(epochs):
        pop.run_epoch()
    return (time.process_time() - t0) / (epochs * pop.steps_per_epoch)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("datasets", nargs="+")
    ap.add_argument("--data-dir", default="../shared/data/uci")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    total = 0.0
    for name in args.datasets:
        data = load_uci(name, args.data_dir)
        splits = list(range(data.n_splits))
        grid = [(g, p, t) for p in data.dropout_rates for t in data.tau_values for g in splits]
        retrain = [(g, data.dropout_rates[0], data.tau_values[0]) for g in splits]
        line = [name]
        for label, part, points in (("grid", U._part(data, splits, True), grid),
                                    ("retrain", U._part(data, splits, False), retrain)):
            pop = population(part, points, data.n_hidden)
            s = cost(pop, args.epochs)
            proj = s * pop.steps_per_epoch * U.UCIProtocol().epochs(data.n_epochs)
            total += proj
            line.append(f"{label} K={pop.k} steps/epoch={pop.steps_per_epoch} {1000 * s:.2f} ms/step"
                        f" -> {proj:.0f} s")
        print("  ".join(line), flush=True)
    print(f"projected training CPU: {total:.0f} s")


if __name__ == "__main__":
    main()
