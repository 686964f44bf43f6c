"""DropPath that skips compute against DropPath that masks, on a residual MLP at p = 0.3.

Both models have the same weights and the same blocks ``x + drop(branch(x))``, branch =
Linear(d, 4d) -> GELU -> Linear(4d, d): "masked" computes every branch on the whole batch and
multiplies by the per-example mask (``droplab.nn.DropPath``); "skip" draws the same mask first
and computes each branch on the kept rows only (``droplab.nn.ResidualDropPath``). One training
step (forward, backward, SGD update) is timed; medians of ``--repeats`` steps after warm-up,
taken round-robin so both see the same machine load. A kept fraction of 1 - p = 0.7 bounds the
gain at 1 / 0.7 = 1.43x for the branch compute; the gather and scatter cost the rest.

    python benchmarks/droppath_skip.py [--p 0.3] [--width 128] [--depth 8] [--batch 256]
                                       [--repeats 21] [--threads N] [--device cpu]

Last line: ``ratio vs masked DropPath: N.NN`` (masked time / skip time; > 1 is faster).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

import droplab.nn as dn


class Masked(nn.Module):
    def __init__(self, branch: nn.Module, p: float, g: torch.Generator) -> None:
        super().__init__()
        self.branch, self.drop = branch, dn.DropPath(p, generator=g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.branch(x))


def _net(width: int, depth: int, p: float, skip: bool, g: torch.Generator) -> nn.Module:
    torch.manual_seed(0)
    blocks = []
    for _ in range(depth):
        branch = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        blocks.append(dn.ResidualDropPath(branch, p, generator=g) if skip else Masked(branch, p, g))
    return nn.Sequential(*blocks, nn.Linear(width, 10))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--p", type=float, default=0.3)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    gens = {"masked": torch.Generator(dev).manual_seed(1), "skip": torch.Generator(dev).manual_seed(1)}
    nets = {k: _net(args.width, args.depth, args.p, k == "skip", g).to(dev) for k, g in gens.items()}
    x = torch.randn(args.batch, args.width, device=dev)
    y = torch.randint(0, 10, (args.batch,), device=dev)
    opts = {k: torch.optim.SGD(n.parameters(), lr=1e-3) for k, n in nets.items()}

    def step(name: str) -> None:
        net, opt = nets[name], opts[name]
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    # Same mask and weights: the first step's outputs agree (a check, not a timing).
    with torch.no_grad():
        a = copy.deepcopy(nets["masked"]).train()
        b = copy.deepcopy(nets["skip"]).train()
        a_out = a(x)
        b_out = b(x)
    print(f"first-step outputs agree: max |diff| = {float((a_out - b_out).abs().max()):.2e}")
    for name in nets:
        for _ in range(3):
            step(name)
    times: dict[str, list[float]] = {k: [] for k in nets}
    for _ in range(args.repeats):
        for name in nets:
            t0 = time.perf_counter()
            step(name)
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"residual MLP: width {args.width}, depth {args.depth}, batch {args.batch}, p={args.p}, "
        f"device {dev}, threads {torch.get_num_threads()}"
    )
    for name, t in med.items():
        print(f"  {name:7s} {t * 1e3:8.2f} ms/step")
    print(f"ratio vs masked DropPath: {med['masked'] / med['skip']:.2f}")


if __name__ == "__main__":
    main()
