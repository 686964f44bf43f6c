"""Sweep throughput: droplab's population engine against a plain PyTorch loop and Optuna.

The demo grid -- MNIST-1D, MLP 40-256-256-10 with ReLU, hidden dropout in {0, 0.1, 0.2, 0.3,
0.4, 0.5} x 5 seeds, Adam, the same epochs and batch size everywhere -- trained three ways in one
run:

1. droplab: ``run_sweep`` (all 30 runs as one vectorized population, with its SQLite store,
   checkpoints and per-epoch metrics).
2. plain PyTorch: one configuration after another, the loop a user would write (``nn.Sequential``
   with ``nn.Dropout``, ``torch.optim.Adam`` with its defaults), computing the same per-epoch
   metrics droplab records (train loss as trained, train and validation loss/accuracy in eval
   mode), so both do the same work.
3. Optuna: a study with ``GridSampler`` over (rate, seed) running the same plain loop trial by
   trial.

droplab runs three times, interleaved with the two halves of the plain loop (this machine's
speed drifts over a minute; each half is set against the droplab runs on either side), and must
give the same accuracies each time. It checks that the three methods agree statistically (per
rate, Welch's t-test on the final validation accuracies of the 5 seeds, p > 0.01 / 6; Optuna
must equal the plain loop exactly), prints the achieved GFLOP/s of each against a plain matmul
measured in the same run, and how the time of one population step grows with the population
size K = 1, 2, 4, ..., 64. The last line is
``ratio vs plain PyTorch: N.NN`` (plain time / droplab's time, ``(d1 + 2 d2 + d3) / 4``).

FLOPs counted: 2 per multiply-add; a training example costs 3x its forward pass (forward,
backward to inputs, backward to weights), an evaluated example 1x. Elementwise work is not
counted, so GFLOP/s understates what any method does.

On a GPU (``--device cuda``) all three run there: the data is moved once, the plain loop
accumulates its loss on the device (one host sync per epoch, as droplab; on the CPU it calls
``.item()`` per step, which costs less there than a tensor add), and one short run of
each (a plain loop; a two-member droplab sweep) loads its CUDA kernels before anything is
timed. The matmul reference is then 4096^3 in
float32 (TF32 off, torch's default).

    python benchmarks/sweep_throughput.py [--epochs 8] [--threads N] [--skip-optuna] [--device cuda]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn

from droplab.data import load_dataset
from droplab.models import ModelSpec
from droplab.sweep import Member, MLPNet, Population, mean_ci, run_sweep
from droplab.train import TrainConfig

RATES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
SEEDS = (0, 1, 2, 3, 4)
HIDDEN = (256, 256)


def plain_run(data, p: float, seed: int, epochs: int, batch: int, lr: float) -> float:
    """One configuration, the way a user writes it in plain PyTorch; returns final val accuracy.

    ``data``: ``(x, y, x_val, y_val, n_classes)``, tensors already on the device.
    """
    x, y, xv, yv, n_classes = data
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        d = x.shape[1]
        model = nn.Sequential(
            nn.Linear(d, HIDDEN[0]), nn.ReLU(), nn.Dropout(p),
            nn.Linear(HIDDEN[0], HIDDEN[1]), nn.ReLU(), nn.Dropout(p),
            nn.Linear(HIDDEN[1], n_classes),
        ).to(x.device)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(seed)
        acc = math.nan
        gpu = x.device.type == "cuda"  # there, .item() per step would wait for the GPU each time
        for _ in range(epochs):
            model.train()
            running = torch.zeros((), device=x.device) if gpu else 0.0
            for idx in torch.randperm(len(x), generator=gen).to(x.device).split(batch):
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                running += loss.detach() * len(idx) if gpu else loss.item() * len(idx)
            train_loss = float(running) / len(x)  # noqa: F841 (the epoch's train loss, as droplab records it)
            model.eval()
            with torch.no_grad():
                train_eval = F.cross_entropy(model(x), y).item()  # noqa: F841 (same metrics as droplab)
                out = model(xv)
                val_loss = F.cross_entropy(out, yv).item()  # noqa: F841
                acc = (out.argmax(1) == yv).float().mean().item()
    return acc


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device, seconds: float = 1.0) -> tuple[int, float]:
    """``(size, GFLOP/s)`` of a square float32 matmul: 1024 on the CPU, 4096 on a GPU."""
    size = 4096 if device.type == "cuda" else 1024
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    a @ b
    _sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
        _sync(device)
    return size, 2 * size**3 * n / (time.perf_counter() - t0) / 1e9


def scaling(
    splits, batch: int, lr: float, device: torch.device, ks=(1, 2, 4, 8, 16, 32, 64), steps: int = 20
) -> list[tuple[int, float]]:
    """Milliseconds per population training step for K members (rates and seeds cycling)."""
    spec = ModelSpec(hidden=HIDDEN, dropout={"hidden": 0.0})
    out = []
    train = TrainConfig(epochs=1, batch_size=batch, lr=lr, eval_train=False, device=device.type)
    for k in ks:
        members = [
            Member(f"m{i}", {}, i % 5, train, rates=(RATES[i % len(RATES)],) * 2) for i in range(k)
        ]
        net = MLPNet(spec, splits.input_shape, splits.n_classes, members)
        data = (splits.x_train, splits.y_train, splits.x_val, splits.y_val)
        pop = Population(net, members, data, "classification", device=device)
        idx = torch.arange(batch, device=device).expand(k, -1)
        xb, yb = pop.x[idx], pop.y[idx]
        run = pop.runs[0]
        for i in range(steps + 3):
            if i == 3:
                _sync(device)
                t0 = time.perf_counter()
            u = pop._uniforms(batch)
            _, grads = net.train_step(pop.params, {}, xb, yb, u, "classification")
            for n, view in run.views.items():
                view.grad = grads[n]
            run.optimizer.step()
        _sync(device)
        out.append((k, (time.perf_counter() - t0) / steps * 1e3))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--skip-optuna", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    epochs, batch, lr = args.epochs, args.batch_size, args.lr
    splits = load_dataset("mnist1d")
    n, nv = len(splits.x_train), len(splits.x_val)
    widths = [math.prod(splits.input_shape), *HIDDEN, splits.n_classes]
    macs = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    runs = len(RATES) * len(SEEDS)
    flops = runs * epochs * 2 * macs * (3 * n + n + nv)
    print(
        f"sweep throughput: MNIST-1D ({n} train / {nv} val), MLP {'-'.join(map(str, widths))}, "
        f"hidden dropout {list(RATES)} x {len(SEEDS)} seeds = {runs} runs, {epochs} epochs, "
        f"batch {batch}, Adam lr {lr}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs"
    )
    if device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(device)}")
    size, gmm = matmul_gflops(device)
    print(f"matmul {size}x{size} float32 (same run): {gmm:.1f} GFLOP/s")
    # One-time costs out of the timings: the first torch.optim optimizer imports torch._dynamo
    # (seconds), whichever method builds one first would pay it; droplab's selection imports
    # scipy.stats for its t quantiles (about a second), which the plain loop never needs.
    torch.optim.Adam(nn.Linear(2, 2).parameters(), fused=True)
    import scipy.stats  # noqa: F401

    data = (
        splits.x_train.to(device), splits.y_train.to(device), splits.x_val.to(device),
        splits.y_val.to(device), splits.n_classes,
    )
    spec = ModelSpec(hidden=HIDDEN, dropout={"hidden": 0.0})
    train = TrainConfig(epochs=epochs, batch_size=batch, lr=lr, device=device.type)

    def droplab_sweep(grid, seeds, cfg) -> tuple[float, dict[float, list[float]]]:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            res = run_sweep(
                spec, data=splits, space={"dropout.hidden": list(grid)}, seeds=list(seeds), train=cfg,
                store=os.path.join(tmp, "bench.db"), progress=False,
            )
            seconds = time.perf_counter() - t0
        return seconds, {row["params"]["dropout.hidden"]: [row["values"][str(s)] for s in seeds] for row in res.rows}

    if device.type == "cuda":  # CUDA context, kernels and handles load once, before any timing
        plain_run(data, 0.5, 0, 1, batch, lr)
        droplab_sweep([0.0, 0.5], [0], train.replace(epochs=1))
    # This machine's speed drifts by 10-30% within a minute, so the two methods are interleaved:
    # droplab, the first half of the plain loop, droplab, the second half, droplab. Each half is
    # set against the mean of the droplab runs on either side of it, so droplab's time for the
    # whole plain window is (d1 + 2 d2 + d3) / 4.
    half = len(RATES) // 2
    plain: dict[float, list[float]] = {}
    t_runs, t_plain, results = [], 0.0, []
    for rates in (RATES[:half], RATES[half:], None):
        seconds, res = droplab_sweep(RATES, SEEDS, train)
        t_runs.append(seconds)
        results.append(res)
        if rates is None:
            break
        t0 = time.perf_counter()
        plain.update({p: [plain_run(data, p, s, epochs, batch, lr) for s in SEEDS] for p in rates})
        t_plain += time.perf_counter() - t0
    ours = results[0]
    t_droplab = (t_runs[0] + 2 * t_runs[1] + t_runs[2]) / 4

    t_optuna = math.nan
    optuna_acc: dict[float, list[float]] = {}
    if not args.skip_optuna:
        try:
            import optuna
        except ImportError:
            print("optuna is not installed (pip install optuna): skipping the Optuna row")
        else:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            sampler = optuna.samplers.GridSampler({"p": list(RATES), "seed": list(SEEDS)}, seed=0)
            study = optuna.create_study(direction="maximize", sampler=sampler)

            def objective(trial):
                p, seed = trial.suggest_categorical("p", list(RATES)), trial.suggest_categorical("seed", list(SEEDS))
                return plain_run(data, p, seed, epochs, batch, lr)

            t0 = time.perf_counter()
            study.optimize(objective, n_trials=runs)
            t_optuna = time.perf_counter() - t0
            for t in study.trials:
                optuna_acc.setdefault(t.params["p"], []).append(t.value)

    print()
    print(f"{'rate':>5} {'droplab val_acc':>22} {'plain val_acc':>22} {'optuna val_acc':>15}  agree")
    all_agree = True
    from scipy.stats import ttest_ind

    for p in RATES:
        a, b = mean_ci(ours[p]), mean_ci(plain[p])
        # Welch's t-test per rate; 0.01 / 6 keeps the chance of a false alarm over the six rates
        # near 1% (the runs differ only in their dropout draws and float rounding).
        same = a.mean == b.mean and a.sd == b.sd
        agree = same or ttest_ind(ours[p], plain[p], equal_var=False).pvalue > 0.01 / len(RATES)
        if optuna_acc:
            c = mean_ci(optuna_acc[p])
            agree = agree and abs(c.mean - b.mean) <= 1e-9  # the same loop, the same seeds
            opt = f"{c.mean:.4f}"
        else:
            opt = "-"
        all_agree &= agree
        print(
            f"{p:5.1f} {a.mean:8.4f} +- {a.half_width:.4f} (sd {a.sd:.3f}) "
            f"{b.mean:8.4f} +- {b.half_width:.4f} {opt:>15}  {'yes' if agree else 'NO'}"
        )
    print(f"accuracy statistics agree: {'yes' if all_agree else 'NO'}")
    same = all(r == ours for r in results)
    all_agree &= same
    print(f"droplab's three runs gave the same accuracies to the last bit: {'yes' if same else 'NO'}")
    print()
    print(f"{'method':<28} {'seconds':>9} {'GFLOP/s':>9} {'% of matmul':>12}")
    rows = (
        ("droplab population", t_droplab), *((f"  run {i + 1}", t) for i, t in enumerate(t_runs)),
        ("plain PyTorch, one by one", t_plain), ("Optuna grid, trial by trial", t_optuna),
    )
    for name, t in rows:
        if math.isfinite(t):
            g = flops / t / 1e9
            print(f"{name:<28} {t:9.2f} {g:9.2f} {100 * g / gmm:11.1f}%")
    print()
    print("population size K vs step time (one training step, batch of %d per member):" % batch)
    print(f"{'K':>4} {'ms/step':>9} {'ms/member-step':>15}")
    for k, ms in scaling(splits, batch, lr, device):
        print(f"{k:4d} {ms:9.2f} {ms / k:15.3f}")
    print(f"ratio vs plain PyTorch: {t_plain / t_droplab:.2f}")
    return 0 if all_agree else 1


if __name__ == "__main__":
    sys.exit(main())
