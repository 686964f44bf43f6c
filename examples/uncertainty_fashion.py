"""MC dropout, a deep ensemble, Masksembles and BatchEnsemble on Fashion-MNIST: quality vs cost.

One small CNN (conv 16 - pool - conv 32 - pool - 64 hidden - classes), four ways to get
uncertainty from it, trained on a subset of Fashion-MNIST with two classes held out (8 "Bag"
and 9 "Ankle boot": the out-of-distribution set). Every method is read through the one API,
:func:`droplab.inference.mc_predict`, and scored on the in-distribution test subset for
accuracy, NLL and ECE (15 bins), and on detecting the held-out classes by predictive entropy
(AUROC), against its training and inference wall time:

* MC dropout (Gal & Ghahramani, ICML 2016, arXiv:1506.02142): dropout 0.5 after the conv stack
  and after the hidden layer, T = 30 passes (cached prefix, stacked passes);
* deep ensemble (Lakshminarayanan, Pritzel, Blundell, NeurIPS 2017, arXiv:1612.01474): M = 5
  plain CNNs from different seeds, trained as one population (:func:`droplab.ensemble`);
* Masksembles (Durasov et al., CVPR 2021, arXiv:2012.08334): M = 4 masks, scale 2, at the same
  two places as the dropout; each training batch is split into the 4 member groups;
* BatchEnsemble (Wen, Tran, Ba, ICLR 2020, arXiv:2002.06715): every conv and Linear layer
  with rank-one fast weights, M = 4; each training batch is tiled 4 times (as their code).

The published claims checked, each with a measured verdict printed at the end:

1. Lakshminarayanan et al. 2017: deep ensembles are better calibrated than MC dropout (lower
   NLL; here also ECE) and detect out-of-distribution inputs better (higher entropy AUROC).
2. Durasov et al. 2021: Masksembles come close to deep ensembles in calibration and OOD
   detection at a fraction of the cost (one network's training).
3. Wen et al. 2020: BatchEnsemble costs far less than an ensemble of the same size
   (one network's parameters plus 2 vectors per member and layer).

One seed per method by default: the verdicts are single-run readings, not significance tests.

    python examples/uncertainty_fashion.py [--train 6000] [--epochs 3] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import droplab
import droplab.nn as dn
from droplab.data.fashion import load_fashion_mnist_arrays
from droplab.inference import ece, mc_predict, nll
from droplab.train import TrainConfig

IN_CLASSES = 8  # classes 0..7 are in distribution; 8 (Bag) and 9 (Ankle boot) are held out
MEMBERS = 4  # Masksembles / BatchEnsemble members
ENSEMBLE = 5  # deep-ensemble members (the paper's M)


def _data(n_train: int, n_test: int, n_ood: int, seed: int):
    arrays, _ = load_fashion_mnist_arrays(download=False)
    g = np.random.default_rng(seed)

    def pick(x, y, keep, n):
        idx = np.flatnonzero(keep(y))
        idx = g.permutation(idx)[:n]
        return torch.tensor(x[idx], dtype=torch.float32).unsqueeze(1) / 255, torch.tensor(y[idx], dtype=torch.long)

    x, y = pick(arrays["x"], arrays["y"], lambda t: t < IN_CLASSES, n_train)
    xt, yt = pick(arrays["x_test"], arrays["y_test"], lambda t: t < IN_CLASSES, n_test)
    xo, _ = pick(arrays["x_test"], arrays["y_test"], lambda t: t >= IN_CLASSES, n_ood)
    mean, std = x.mean(), x.std()
    return (x - mean) / std, y, (xt - mean) / std, yt, (xo - mean) / std


def cnn(drop: str | None = None, p: float = 0.5) -> nn.Module:
    """The small CNN; ``drop`` puts dropout or Masksembles after the conv stack and hidden layer."""
    def after(width: int) -> nn.Module:
        if drop == "dropout":
            return nn.Dropout(p)
        if drop == "masksembles":
            return dn.Masksembles(width, MEMBERS, 2.0)
        return nn.Identity()

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        after(32 * 7 * 7), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), after(64), nn.Linear(64, IN_CLASSES),
    )


def batch_ensemble_cnn() -> nn.Module:
    return nn.Sequential(
        dn.BatchEnsembleConv2d(1, 16, 3, MEMBERS, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        dn.BatchEnsembleConv2d(16, 32, 3, MEMBERS, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        dn.BatchEnsembleLinear(32 * 7 * 7, 64, MEMBERS), nn.ReLU(), dn.BatchEnsembleLinear(64, IN_CLASSES, MEMBERS),
    )


def fit(model: nn.Module, x, y, epochs: int, seed: int, *, tile: int = 1, batch: int = 64) -> float:
    """Adam 1e-3; ``tile`` repeats every batch (BatchEnsemble). Returns seconds."""
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(epochs):
            for idx in torch.randperm(len(x), generator=g).split(batch):
                if len(idx) % MEMBERS:
                    continue  # member groups need equal sizes: drop a ragged last batch
                xb, yb = x[idx], y[idx]
                if tile > 1:
                    xb, yb = xb.repeat(tile, 1, 1, 1), yb.repeat(tile)
                loss = F.cross_entropy(model(xb), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
    model.eval()
    return time.perf_counter() - t0


def auroc(negatives: torch.Tensor, positives: torch.Tensor) -> float:
    """P(score of a positive > score of a negative), ties counting 1/2 (Mann-Whitney U / n m)."""
    scores = torch.cat([negatives, positives]).double()
    order = scores.argsort()
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    for value in scores.unique():  # average ranks of ties
        tied = scores == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    n, m = len(negatives), len(positives)
    return float((ranks[n:].sum() - m * (m + 1) / 2) / (n * m))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=6000, help="training images (default 6000)")
    ap.add_argument("--test", type=int, default=2000, help="in-distribution test images (default 2000)")
    ap.add_argument("--ood", type=int, default=1000, help="held-out-class images (default 1000)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--samples", type=int, default=30, help="MC dropout passes (default 30)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="a seconds-long smoke run; numbers mean nothing")
    args = ap.parse_args(argv)
    if args.quick:
        args.train, args.test, args.ood, args.epochs, args.samples = 256, 128, 64, 1, 4
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    x, y, xt, yt, xo = _data(args.train, args.test, args.ood, args.seed)
    rows: dict[str, dict[str, float]] = {}

    def score(name: str, model: nn.Module, train_s: float, samples: int) -> None:
        t0 = time.perf_counter()
        ind = mc_predict(model, xt, samples=samples, seed=args.seed, batch_size=512)
        ood = mc_predict(model, xo, samples=samples, seed=args.seed + 1, batch_size=512)
        infer_s = time.perf_counter() - t0
        rows[name] = {
            "acc": float((ind.predictions() == yt).double().mean()), "nll": nll(ind.probs, yt),
            "ece": ece(ind.probs, yt), "auroc": auroc(ind.predictive_entropy, ood.predictive_entropy),
            "auroc_mi": auroc(ind.mutual_information, ood.mutual_information),
            "train_s": train_s, "infer_s": infer_s,
        }

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        mc = cnn("dropout")
    score("MC dropout", mc, fit(mc, x, y, args.epochs, args.seed), args.samples)
    cfg = TrainConfig(epochs=args.epochs, lr=1e-3, batch_size=64, eval_train=False, device="cpu")
    t0 = time.perf_counter()
    deep = droplab.ensemble(lambda: cnn(), (x, y), members=ENSEMBLE, seed=args.seed, train=cfg)
    score("deep ensemble", deep, time.perf_counter() - t0, ENSEMBLE)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        ms = cnn("masksembles")
    score("Masksembles", ms, fit(ms, x, y, args.epochs, args.seed), MEMBERS)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        be = batch_ensemble_cnn()
    score("BatchEnsemble", be, fit(be, x, y, args.epochs, args.seed, tile=MEMBERS), MEMBERS)

    print(f"Fashion-MNIST, classes 0-7: {len(x)} train, {len(xt)} test; OOD: {len(xo)} images of "
          f"classes 8-9; {args.epochs} epochs, seed {args.seed}")
    print(f"{'method':15s} {'acc':>6s} {'NLL':>6s} {'ECE':>6s} {'AUROC(H)':>9s} {'AUROC(MI)':>9s} "
          f"{'train s':>8s} {'infer s':>8s}")
    for name, r in rows.items():
        print(f"{name:15s} {r['acc']:6.3f} {r['nll']:6.3f} {r['ece']:6.3f} {r['auroc']:9.3f} "
              f"{r['auroc_mi']:9.3f} {r['train_s']:8.1f} {r['infer_s']:8.2f}")
    mcd, ens, msk, bte = (rows[k] for k in ("MC dropout", "deep ensemble", "Masksembles", "BatchEnsemble"))

    def verdict(ok: bool) -> str:
        return "holds" if ok else "does not hold"

    def better(a: float, b: float, margin: float = 0.01) -> str:
        """a higher than b; a gap under ``margin`` is no evidence either way in one run."""
        return "no clear difference" if abs(a - b) < margin else verdict(a > b)

    calib = ens["nll"] < mcd["nll"] and ens["ece"] < mcd["ece"]
    print(f"claim 1a (Lakshminarayanan 2017: ensemble better calibrated than MC dropout): "
          f"NLL {ens['nll']:.3f} vs {mcd['nll']:.3f}, ECE {ens['ece']:.3f} vs {mcd['ece']:.3f} -> {verdict(calib)}")
    print(f"claim 1b (ensemble detects OOD better than MC dropout): AUROC {ens['auroc']:.3f} vs "
          f"{mcd['auroc']:.3f} -> {better(ens['auroc'], mcd['auroc'])}")
    close = msk["nll"] <= ens["nll"] * 1.10 and msk["auroc"] >= ens["auroc"] - 0.02
    cheap = msk["train_s"] < ens["train_s"]
    print(f"claim 2 (Durasov 2021: Masksembles close to the ensemble, within 10% NLL and 0.02 AUROC, "
          f"at lower cost): NLL {msk['nll']:.3f} vs {ens['nll']:.3f}, AUROC {msk['auroc']:.3f} vs "
          f"{ens['auroc']:.3f}, train {msk['train_s']:.1f} s vs {ens['train_s']:.1f} s -> {verdict(close and cheap)}")
    params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    print(f"claim 3 (Wen 2020: BatchEnsemble far cheaper than an ensemble): parameters {params(be)} vs "
          f"{params(deep)} ({params(deep) / params(be):.1f}x), train {bte['train_s']:.1f} s vs "
          f"{ens['train_s']:.1f} s, inference {bte['infer_s']:.2f} s vs {ens['infer_s']:.2f} s -> "
          f"{verdict(params(be) * 2 < params(deep) and bte['infer_s'] < ens['infer_s'])}")
    print("comparison: " + "; ".join(
        f"{k} acc {r['acc']:.3f} NLL {r['nll']:.3f} ECE {r['ece']:.3f} AUROC {r['auroc']:.3f}" for k, r in rows.items()
    ))
    return 0


if __name__ == "__main__":
    sys.exit(main())
