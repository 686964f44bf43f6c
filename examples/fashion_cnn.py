"""A 2-d CNN on Fashion-MNIST: spatial dropout and DropBlock against plain dropout and none.

Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, arXiv:1708.07747) is read from its idx files by
:func:`droplab.data.load_dataset` (the Debian package ``dataset-fashion-mnist`` ships them; see
the README for other places it looks). A subsample of the training set (``--train-size``,
default 3000, stratified and seeded, one draw per seed shared by every configuration) keeps a
CPU run within minutes; it is drawn from the 90% of the training set that is not held out for
validation. The test set is the full official 10000. Nothing selects on validation data, so none is evaluated.

The network (:func:`droplab.models.build_model`, kind ``cnn2d``): two 3x3 conv layers (16 and 32
channels by default), each followed by ReLU, 2x2 max-pooling and the dropout layer under study,
then a linear classifier. Dropout configurations, all at the same places and the same seeds
(same initial weights, same batch order):

- plain (element-wise) dropout (Srivastava et al. 2014);
- spatial dropout, whole feature maps (Tompson et al. 2015, arXiv:1411.4280);
- DropBlock, contiguous 3x3 regions (Ghiasi, Lin & Le 2018, arXiv:1810.12890).

Run::

    python examples/fashion_cnn.py            # 3 seeds
    python examples/fashion_cnn.py --quick    # seconds-long smoke run
    droplab train --config configs/fashion_cnn.toml   # one run of one configuration
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Timer, add_common_args, report  # noqa: E402

from droplab.data import load_dataset  # noqa: E402
from droplab.errors import DroplabError  # noqa: E402
from droplab.models import ModelSpec, build_model, parse_dropout  # noqa: E402
from droplab.train import TrainConfig, Trainer  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-size", type=int, default=3000,
                        help="training examples kept (default 3000; the full set is 54000)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs (default 8)")
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default 2e-3)")
    parser.add_argument("--rate", type=float, default=0.1,
                        help="drop probability of every configuration (default 0.1: keep "
                        "probability 0.9, the best in the DropBlock paper)")
    parser.add_argument("--channels", type=int, nargs=2, default=(16, 32), metavar=("C1", "C2"),
                        help="channels of the two conv layers (default 16 32)")
    parser.add_argument("--block-size", type=int, default=3, help="DropBlock block size (default 3)")
    parser.add_argument("--data-dir", help="folder of the Fashion-MNIST idx files (default: search)")
    add_common_args(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    timer = Timer()
    if args.quick:
        epochs, seeds, size, channels = 1, 2, 256, (4, 8)
    else:
        epochs, seeds, size, channels = args.epochs, args.seeds, args.train_size, tuple(args.channels)

    p = args.rate
    configs = {
        "no dropout": "",
        f"dropout {p}": f"hidden={p}",
        f"spatial {p}": f"hidden={p}:spatial",
        f"dropblock {p}": f"hidden={p}:dropblock:block_size={args.block_size}",
    }
    acc: dict[str, dict[int, float]] = {name: {} for name in configs}
    seconds: dict[str, float] = {name: 0.0 for name in configs}
    try:
        for seed in range(seeds):
            # one split per seed, shared by every configuration (paired comparison)
            splits = load_dataset("fashion_mnist", data_dir=args.data_dir, subsample=size, seed=seed)
            n_test = 256 if args.quick else len(splits.x_test)
            test = (splits.x_test[:n_test], splits.y_test[:n_test])
            for name, dropout in configs.items():
                spec = ModelSpec(kind="cnn2d", hidden=channels, kernel_size=3, pool=2,
                                 dropout=parse_dropout(dropout))
                model = build_model(spec, splits.input_shape, splits.n_outputs, seed=seed)
                config = TrainConfig(lr=args.lr, epochs=epochs, batch_size=64, seed=seed,
                                     eval_train=False, device="cpu")
                # No per-epoch validation: nothing here selects on it, and it would cost as
                # much as training does.
                fit = Trainer(model, config).fit((splits.x_train, splits.y_train), test=test)
                acc[name][seed] = fit.test["acc"]
                seconds[name] += fit.seconds
    except DroplabError as exc:  # e.g. the idx files are nowhere to be found
        print(f"fashion_cnn: error: {exc}", file=sys.stderr)
        return 2
    print(f"Fashion-MNIST: {size} training examples per seed, {n_test} test")
    report(
        f"CNN{channels} on Fashion-MNIST, {size} training images, {epochs} epochs",
        "test accuracy",
        acc,
        baseline="no dropout",
        higher_is_better=True,
        seconds=seconds,
    )
    print(f"total {timer.seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
