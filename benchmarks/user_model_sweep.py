"""A user's own CNN (torch's nn.Dropout inside), 4 rates x 5 seeds: one population vs a plain loop.

The model is what a user writes -- conv, pool, conv, pool, linear, ReLU, ``nn.Dropout(p)``,
linear -- on a Fashion-MNIST subset (idx files, standardized, ``load_dataset``). The 20 runs
(rates 0, 0.2, 0.4, 0.6 x seeds 0-4) are trained two ways in one process:

1. droplab: ``droplab.nn.convert`` turns the model's ``nn.Dropout`` into droplab's layer, whose
   rate becomes a per-member buffer (``droplab.nn.rates_as_buffers``, done by ``ModuleNet``), so
   all 20 (rate, seed) members train as ONE population (``torch.func.vmap`` over stacked weights).
2. plain PyTorch: the loop a user writes, one run after another, the same model with torch's
   ``nn.Dropout``, ``torch.optim.Adam``, the same batches (one ``randperm`` per epoch from a
   generator seeded with the run's seed, as the population draws them), the same initial weights
   (the model built under ``torch.manual_seed(seed)``) and the same per-epoch validation pass.

Both get the same epochs, batch size and optimizer. The accuracies must agree: per rate,
Welch's t-test on the final validation accuracies of the 5 seeds, p > 0.01 / 4 (the dropout
masks differ -- droplab's generator vs torch's -- so the runs agree in distribution, not in
bits; at rate 0 nothing is random but the batch order, so the two agree to float rounding).
Timing is interleaved (droplab, plain, droplab) to cancel drift, after an untimed warm-up of
each. The last line is ``ratio vs plain PyTorch: N.NN``: the plain loop's process CPU time over
the mean of the two droplab runs'. Why CPU time and not wall time: this machine's 2 cores are
shared with other jobs, and wall time mostly measures the neighbours (two identical droplab runs
took 101 s and 36 s of wall time at a load of 9), while the CPU time of a single-threaded
process (``torch.set_num_threads(1)`` on both sides, the default of ``--threads``) is the work
each method does, and it is what a user with the cores to themselves waits for. Both timings
include everything a run costs: building the models (and the population's stacking), every
training step and every epoch's validation pass. The wall-clock ratio is printed too, marked
noisy; with ``--threads`` > 1 CPU time also counts the threads' synchronisation, so the CPU
ratio is then only indicative.

Where the time goes on a CPU: torch.func batches a convolution whose weights differ per member
as one grouped convolution (oneDNN), 55-67% of a population step here; depending on the shapes
it is faster or slower than the same convolutions one by one (measured for 20 members, forward
and backward: 4.9 vs 9.5 ms for 4->8 channels at batch 32 on 14x14, but 42 vs 26 ms at batch 64
on 28x28); the population wins on the per-step overhead of the plain loop (Python, autograd,
the optimizer: one step for 20 members) and on the linear layers (batched GEMMs). The model is
therefore a small all-convolutional net (strided convolutions, as Springenberg et al.,
arXiv:1412.6806) at batch 32; wider convolutions lower the ratio. oneDNN's grouped convolution
is faster channels-last (20 members, forward and backward, single thread: 3.0 vs 4.6 ms for
1->4 channels on 28x28, 1.7 vs 3.2 ms for 4->8 on 14x14), so ``ModuleNet`` feeds images into a
first ``Conv2d`` channels-last (its ``train_step``): 5-9% less CPU time per population epoch of
this benchmark, the same numbers. The per-epoch validation pass of 20 members on 1000 images
in chunks of 500 made 31 MB activations, which glibc maps afresh at each allocation (page faults:
0.15-0.29 s of kernel time per population, 63-130 thousand faults); the population now
evaluates in chunks of about 8 MiB of activations (``ModuleNet.activation_width``: 133 images
here), 0.02 s of kernel time, 9 thousand faults, and the training batch is gathered with
``index_select`` (0.45 vs 0.75 ms a step). Measured and not taken: the convolution as unfold + batched
matmul (slower: 8.4-9.7 vs 4.2-6.9 ms per layer), a custom ``autograd.Function`` with its own
vmap rule running the grouped convolution and its backward channels-last (slower: 14-16 vs
9-11 ms for the two layers, the Python of torch.func's custom-function machinery), and
``torch.compile`` (a compile costs ~20 s of CPU, more than the whole population trains here).

    python benchmarks/user_model_sweep.py [--train 2000] [--epochs 3] [--threads N] [--default-layout]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

import droplab.nn as dn
from droplab.data import load_dataset
from droplab.sweep.population import Member, ModuleNet, Population
from droplab.train import TrainConfig

RATES = (0.0, 0.2, 0.4, 0.6)
SEEDS = (0, 1, 2, 3, 4)


class UserCNN(nn.Module):
    """A small all-convolutional CNN as a user writes it, with torch's own nn.Dropout."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, stride=2, padding=1)   # 28x28 -> 14x14
        self.conv2 = nn.Conv2d(4, 8, 3, stride=2, padding=1)   # 14x14 -> 7x7
        self.fc1 = nn.Linear(8 * 7 * 7, 64)
        self.drop = nn.Dropout(p)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.fc2(self.drop(F.relu(self.fc1(x.flatten(1)))))


def _build(p: float, seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UserCNN(p)


def droplab_population(data, cfg: TrainConfig) -> tuple[float, dict[tuple[float, int], float]]:
    members = [Member(key=f"p={p}", params={"p": p}, seed=s, train=cfg) for p in RATES for s in SEEDS]
    t0, c0 = time.perf_counter(), time.process_time()
    # The build function gets the member's seed applied already (ModuleNet forks torch's RNG).
    net = ModuleNet(lambda m: dn.convert(UserCNN(m.params["p"])), members)
    pop = Population(net, members, data, "classification")
    rows = {}
    while not pop.done:
        rows = pop.run_epoch()
    seconds = (time.perf_counter() - t0, time.process_time() - c0)
    return seconds, {(m.params["p"], m.seed): rows[i]["val_acc"] for i, m in enumerate(members)}


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    model.eval()
    correct = sum(int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum())
                  for i in range(0, len(x), batch))
    model.train()
    return correct / len(x)


def plain_loop(data, cfg: TrainConfig) -> tuple[float, dict[tuple[float, int], float]]:
    x, y, xv, yv = data
    out = {}
    t0, c0 = time.perf_counter(), time.process_time()
    for p in RATES:
        for seed in SEEDS:
            model = _build(p, seed)
            torch.manual_seed(seed)  # the run's dropout draws (torch's global generator)
            opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
            g = torch.Generator().manual_seed(seed)
            for _ in range(cfg.epochs):
                for idx in torch.randperm(len(x), generator=g).split(cfg.batch_size):
                    loss = F.cross_entropy(model(x[idx]), y[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                acc = _accuracy(model, xv, yv, cfg.eval_batch_size)
            out[(p, seed)] = acc
    return (time.perf_counter() - t0, time.process_time() - c0), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=2000, help="training examples (subset)")
    ap.add_argument("--val", type=int, default=1000, help="validation examples")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1, see above)")
    ap.add_argument("--default-layout", action="store_true",
                    help="for comparison: vmap's default input layout (ModuleNet.use_channels_last = False)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ModuleNet.use_channels_last = not args.default_layout
    from scipy.stats import ttest_ind

    splits = load_dataset("fashion_mnist", subsample=args.train, seed=0)
    data = (splits.x_train, splits.y_train, splits.x_val[: args.val], splits.y_val[: args.val])
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=1e-3, eval_train=False,
                      eval_batch_size=500)
    print(f"Fashion-MNIST subset: train {len(data[0])}, val {len(data[2])}; UserCNN; "
          f"{len(RATES)} rates x {len(SEEDS)} seeds, {cfg.epochs} epochs, batch {cfg.batch_size}, "
          f"Adam lr {cfg.lr}; torch threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}; "
          f"ModuleNet channels-last images: {ModuleNet.use_channels_last}")
    # Warm-up (not timed): one short run of each, so that neither pays for first calls.
    small = tuple(t[:64] for t in data)
    droplab_population(small, cfg.replace(epochs=1))
    plain_loop(small, cfg.replace(epochs=1))
    d1, acc_d = droplab_population(data, cfg)
    tp, acc_p = plain_loop(data, cfg)
    d2, acc_d2 = droplab_population(data, cfg)
    assert acc_d == acc_d2, "droplab gave different accuracies on a second run (not deterministic)"
    print(f"{'rate':>5} {'droplab acc (mean, 5 seeds)':>28} {'plain acc':>10} {'Welch p':>8}")
    worst = 1.0
    for p in RATES:
        a = [acc_d[(p, s)] for s in SEEDS]
        b = [acc_p[(p, s)] for s in SEEDS]
        pval = 1.0 if a == b else float(ttest_ind(a, b, equal_var=False).pvalue)
        worst = min(worst, pval)
        print(f"{p:>5} {sum(a) / len(a):>28.4f} {sum(b) / len(b):>10.4f} {pval:>8.3f}")
        if p == 0.0:
            gap = max(abs(x - y) for x, y in zip(a, b))
            print(f"      rate 0 (no randomness but the batch order): largest gap {gap:.4f}")
            assert gap <= 0.01, f"at rate 0 the two should agree to rounding, gap {gap}"
    agree = worst > 0.01 / len(RATES)
    print(f"accuracies agree (every Welch p > {0.01 / len(RATES):.4f}): {agree}")
    assert agree
    print(f"droplab population (20 members): wall {d1[0]:.1f} s, {d2[0]:.1f} s; CPU {d1[1]:.1f} s, "
          f"{d2[1]:.1f} s")
    print(f"plain PyTorch loop (20 runs):     wall {tp[0]:.1f} s; CPU {tp[1]:.1f} s; "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"wall-clock ratio (noisy on a shared machine): {tp[0] / ((d1[0] + d2[0]) / 2):.2f}")
    print(f"ratio vs plain PyTorch: {tp[1] / ((d1[1] + d2[1]) / 2):.2f}")


if __name__ == "__main__":
    main()
