"""Dropout kernel throughput: droplab's counter-based dropout against torch's F.dropout.

Measured in one run, on the same tensors: forward and forward+backward throughput of
``counter_dropout`` (droplab), ``torch.nn.functional.dropout`` (torch) and a plain copy (the
memory-bandwidth bound), and the bytes each saves for backward (counted with
``torch.autograd.graph.saved_tensors_hooks``). The last line is the ratio of torch's
forward+backward time to droplab's.

Throughput counts the bytes an ideal kernel moves: the input read and the output written in
forward (8 bytes per float32 element), the same again in backward. A mask is not counted, so a
method that stores one is charged for it only through its time. Timings are the median of
``--repeats`` runs after warm-up (compilation included in warm-up, not in the timings), taken
round-robin across methods so that all of them see the same machine load.

Every out-of-place op pays for its fresh output's page faults: with glibc's malloc every
allocation above 32 MiB is a fresh mapping, faulted in 4 KiB at a time, which at this size costs
more than the kernel itself; the "clone" row shows that floor. droplab writes such large outputs
(forward, and the gradient in backward) into its own mappings advised for transparent huge pages
(``_fresh_output`` in ``droplab/functional/counter.py``), so it can run above the clone row.
torch's allocator can do the same for every tensor: ``THP_MEM_ALLOC_ENABLE=1`` in the environment
(the header line says whether it is set); it helps torch's F.dropout little, since that is bound
by its random number generation, and it slows the medium-sized allocations of a training loop.

    python benchmarks/dropout_kernel.py [--numel 16777216] [--p 0.5] [--repeats 7]
                                        [--threads N] [--eager]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from droplab.functional.counter import counter_backend, counter_dropout, draw_seed


def _interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, timed round-robin so all see the same machine load."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _saved_bytes(op: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> int:
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        op(x)
    return total


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--numel", type=int, default=16 * 2**20)
    parser.add_argument("--p", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--eager", action="store_true", help="also time droplab's eager fallback")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    n, p = args.numel, args.p
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, generator=gen).requires_grad_()
    grad = torch.randn(n, generator=gen)
    seed = draw_seed(gen)
    out = torch.empty(n)

    methods: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "droplab counter_dropout": lambda t: counter_dropout(t, p, seed),
        "torch F.dropout": lambda t: F.dropout(t, p, training=True),
    }
    backend = counter_backend()
    print(
        f"dropout kernel, {n:,} float32 elements, p={p}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, droplab backend: {backend}, "
        f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}"
    )
    # Warm-up compiles the droplab kernel (tens of seconds the first time in a process).
    start = time.perf_counter()
    methods["droplab counter_dropout"](x).backward(grad)
    print(f"droplab warm-up (compilation) {time.perf_counter() - start:.1f} s")
    if args.eager:

        def eager(t: torch.Tensor) -> torch.Tensor:
            os.environ["DROPLAB_NO_COMPILE"] = "1"  # read on every call
            try:
                return counter_dropout(t, p, seed)
            finally:
                del os.environ["DROPLAB_NO_COMPILE"]

        methods["droplab (eager fallback)"] = eager

    nbytes = 8 * n  # read input + write output, float32
    timed: dict[str, Callable[[], object]] = {}
    for name, op in methods.items():

        def fwd(op: Callable[[torch.Tensor], torch.Tensor] = op) -> None:
            with torch.no_grad():
                op(x)

        def fwd_bwd(op: Callable[[torch.Tensor], torch.Tensor] = op) -> None:
            torch.autograd.grad(op(x), x, grad)

        timed[f"{name}|fwd"], timed[f"{name}|fwd+bwd"] = fwd, fwd_bwd
    timed["copy|fwd"] = lambda: out.copy_(x.detach())
    timed["clone|fwd"] = lambda: x.detach().clone()
    t = _interleaved_medians(timed, args.repeats)

    rows = []
    for name, op in methods.items():
        saved = _saved_bytes(op, x)
        saved_txt = f"{saved / 2**20:.1f} MiB" if saved else "0 B (none)"
        fb = 2 * nbytes / t[f"{name}|fwd+bwd"] / 1e9
        rows.append((name, nbytes / t[f"{name}|fwd"] / 1e9, fb, saved_txt))
    copy_gbs = nbytes / t["copy|fwd"] / 1e9
    rows.append(("plain copy (bandwidth bound)", copy_gbs, copy_gbs, "-"))
    clone_gbs = nbytes / t["clone|fwd"] / 1e9
    rows.append(("copy to a new tensor (clone)", clone_gbs, clone_gbs, "-"))

    header = f"{'method':<30} {'fwd GB/s':>9} {'fwd+bwd GB/s':>13} {'saved for backward':>19}"
    print(header)
    print("-" * len(header))
    for name, gbs_f, gbs_fb, saved in rows:
        print(f"{name:<30} {gbs_f:>9.2f} {gbs_fb:>13.2f} {saved:>19}")
    ratio = t["torch F.dropout|fwd+bwd"] / t["droplab counter_dropout|fwd+bwd"]
    print(f"ratio vs torch F.dropout (fwd+bwd): {ratio:.2f}")
    return ratio


if __name__ == "__main__":
    main()
