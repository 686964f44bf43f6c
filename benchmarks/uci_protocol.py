"""The published UCI protocol on bostonHousing: droplab's populations against a plain PyTorch loop.

droplab (:func:`droplab.reproduce.uci.run_uci`): all 20 splits x 4 rates x 3 tau = 240 grid runs
as ONE population, MC-dropout validation of all 240 at once, the 20 retrained models as a second
population, T = 10,000 MC passes on the test parts, batched over members and passes. Each
training step of a population is one call of the fused C++ step
(:mod:`droplab.sweep.fused_step`; the header line says whether it runs, or the batched-torch
fallback; ``DROPLAB_FUSED_STEP=0`` forces the fallback).

Plain PyTorch: what a user writes for one (split, rate, tau) run, one after another --
``nn.Sequential(Dropout, Linear, ReLU, Dropout, Linear)``, Glorot init, ``torch.optim.Adam``,
batch 128, loss MSE + reg * sum(W**2) over both layers (Keras ``l2(reg)``), then MC dropout by
repeating the evaluation inputs T times in one forward pass (dropout on). Training all 260 runs
this way takes hours on this CPU, so the script times a SUBSET (``--plain-runs`` grid runs, each
trained for the full epoch count and validated with the protocol's passes, plus the test
evaluation of one retrained model), and EXTRAPOLATES: 240 x the mean grid run + 20 x the mean
grid run scaled by the retraining set's batches per epoch (455 rows: 4 batches against 3) + 20
x the test evaluation. Half the plain runs are timed before droplab and half after (the shared
machine's speed drifts).

Agreement: each plain run's validation RMSE and log-likelihood are printed beside those of the
droplab member with the same (split, rate, tau); they differ by the seed (initialization, batch
order, masks), so the check is that the mean difference is small against the spread of the
grid (|mean relative RMSE difference| < 10%: a sanity check against a systematic error, not a
test -- with a few runs the seed noise of one run, about 10% on bostonHousing, dominates).

Measured here (2 shared cores, load 2-12, one thread): droplab 961 s against 14,247 s
extrapolated (53.3 s per plain run), ratio 14.83; at --epoch-multiplier 10, 13.69.

    python benchmarks/uci_protocol.py [--data-dir ../shared/data/uci] [--epoch-multiplier 100]
                                      [--plain-runs 4] [--threads 1]

The last line is ``ratio vs plain PyTorch: N.NN`` (extrapolated plain time / droplab's time).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from droplab.data.uci import load_uci
from droplab.reproduce import uci as U
from droplab.sweep import fused_step


def plain_run(part: U._Part, group: int, p: float, tau: float, hidden: int, epochs: int, passes: int,
              seed: int) -> tuple[float, float, float]:
    """Train one (split, rate, tau) run the plain way and MC-evaluate it; (rmse, ll, seconds)."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    x, y = part.x[group], part.y[group]
    n, d = x.shape
    model = nn.Sequential(nn.Dropout(p), nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(p), nn.Linear(hidden, 1))
    for layer in (model[1], model[4]):
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)
    reg = 1e-4 * (1 - p) / (2 * n * tau)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=g).split(128):
            out = model(x[idx])
            loss = F.mse_loss(out[:, 0], y[idx]) + reg * (model[1].weight.pow(2).sum() + model[4].weight.pow(2).sum())
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():  # MC dropout: dropout stays on, the inputs repeated T times
        xe = part.x_eval[group]
        samples = model(xe.repeat(passes, 1)).view(passes, len(xe)).double()
        samples = samples * part.std_y[group] + part.mean_y[group]
        ye = part.y_eval[group]
        rmse = float((ye - samples.mean(0)).pow(2).mean().sqrt())
        ll = float(U.gaussian_mc_loglik(ye, samples, tau).mean())
    return rmse, ll, time.perf_counter() - t0


def plain_test_eval(part: U._Part, hidden: int, passes: int) -> float:
    """Seconds of the plain T-pass test evaluation of one model (weights untrained: same cost)."""
    x = part.x_eval[0]
    model = nn.Sequential(nn.Dropout(0.05), nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Dropout(0.05),
                          nn.Linear(hidden, 1))
    t0 = time.perf_counter()
    with torch.no_grad():
        for chunk in range(0, passes, 1000):  # 1,000 passes at a time: bounded memory
            model(x.repeat(min(1000, passes - chunk), 1))
    return time.perf_counter() - t0


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:  # not Linux
        return "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "uci"))
    ap.add_argument("--epoch-multiplier", type=float, default=100, help="100: the published 4,000 epochs")
    ap.add_argument("--plain-runs", type=int, default=4, help="plain grid runs timed (extrapolated to 240)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both (default 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_uci("bostonHousing", args.data_dir)
    protocol = U.UCIProtocol(epoch_multiplier=args.epoch_multiplier)
    epochs = protocol.epochs(data.n_epochs)
    splits = list(range(data.n_splits))
    inner = U._part(data, splits, validation=True)
    full = U._part(data, splits, validation=False)
    rng = np.random.default_rng(0)
    picks = [(int(rng.integers(len(splits))), float(rng.choice(data.dropout_rates)), float(rng.choice(data.tau_values)))
             for _ in range(args.plain_runs)]
    print(f"bostonHousing, {len(splits)} splits, grid {len(data.dropout_rates)} rates x {len(data.tau_values)} tau, "
          f"{epochs} epochs, {protocol.val_passes} validation / {protocol.test_passes} test MC passes, "
          f"{torch.get_num_threads()} thread(s); training step: {fused_step.backend()}; load {_load()}")
    plain = []
    half = (len(picks) + 1) // 2
    for g, p, tau in picks[:half]:
        plain.append(plain_run(inner, g, p, tau, data.n_hidden, epochs, protocol.val_passes, seed=g))
        print(f"  plain run split {g} p {p} tau {tau}: {plain[-1][2]:.1f} s", flush=True)
    t0 = time.perf_counter()
    result = U.run_uci(data, protocol=protocol)
    droplab_s = time.perf_counter() - t0
    print(f"droplab: {droplab_s:.1f} s ({', '.join(f'{k} {v:.1f} s' for k, v in result.timings.items())})", flush=True)
    for g, p, tau in picks[half:]:
        plain.append(plain_run(inner, g, p, tau, data.n_hidden, epochs, protocol.val_passes, seed=g))
        print(f"  plain run split {g} p {p} tau {tau}: {plain[-1][2]:.1f} s", flush=True)
    test_s = plain_test_eval(full, data.n_hidden, protocol.test_passes)
    per_run = float(np.mean([s for _, _, s in plain]))
    retrain_scale = math.ceil(len(data.train_index[0]) / 128) / math.ceil(inner.x.shape[1] / 128)
    plain_total = 240 * per_run + len(splits) * (per_run * retrain_scale + test_s)
    print(f"plain PyTorch: {len(plain)} grid runs timed, mean {per_run:.1f} s each; test evaluation "
          f"{test_s:.2f} s per model; EXTRAPOLATED to 240 grid + {len(splits)} retrained runs: {plain_total:.0f} s")

    # agreement: the plain runs against the droplab members with the same (split, rate, tau)
    val = {(row["split"], row["rate"], row["tau"]): row for row in result.grid}
    rel = []
    print("agreement (validation, droplab member vs plain run with the same split, rate, tau):")
    for (g, p, tau), (rmse, ll, _) in zip(picks, plain):
        d_rmse, d_ll = val[g, p, tau]["val_rmse"], val[g, p, tau]["val_ll"]
        rel.append((d_rmse - rmse) / rmse)
        print(f"  split {g:2d} p {p:<5} tau {tau:<4}: RMSE droplab {d_rmse:.3f} plain {rmse:.3f}; "
              f"LL droplab {d_ll:.3f} plain {ll:.3f}")
    all_rmse = np.array([row["val_rmse"] for row in result.grid])
    spread = float(all_rmse.std() / all_rmse.mean())
    ok = abs(float(np.mean(rel))) < 0.10
    print(f"mean relative RMSE difference {np.mean(rel):+.3f} (grid's relative spread {spread:.3f}): "
          f"{'agree' if ok else 'DISAGREE'}")
    print(f"droplab test RMSE {result.rmse:.3f} ± {result.rmse_se:.3f}, LL {result.ll:.3f} ± {result.ll_se:.3f} "
          f"(published 2.90 ± 0.18, -2.40 ± 0.04)")
    print(f"load average at the end: {_load()}")
    print(f"ratio vs plain PyTorch: {plain_total / droplab_s:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
