"""Time-series forecasting with variational (locked) dropout in an LSTM, against no dropout.

The yearly sunspot numbers 1700-2008 (Wolf/Zurich series as shipped by statsmodels: no
download) are forecast one year ahead from the previous ``--window`` years by an LSTM (or GRU)
built with :func:`droplab.models.build_model` and trained with :class:`droplab.train.Trainer`.
The dropout models put dropout on the LSTM's output sequence: a fresh mask at every time step
(Zaremba, Sutskever & Vinyals 2014, arXiv:1409.2329), or LockedDropout, one mask per sequence
reused at every step (variational dropout, Gal & Ghahramani 2016, arXiv:1512.05287). All
models see the same seeds (same initial weights, same batch order), so the table compares them
seed by seed. A persistence forecast (next year = this year) is printed for scale.

Splits are chronological: train up to 1915, validate 1916-1961, test 1962-2008 (windows whose
*target* year falls in the split; their inputs may reach back into the previous split, which is
observed history).

Run::

    python examples/forecast_sunspots.py               # 3 seeds, plot in out/forecast/
    python examples/forecast_sunspots.py --quick       # seconds-long smoke run

Needs the ``domains`` extra (statsmodels): ``pip install -e '.[domains]'``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Timer, add_common_args, report  # noqa: E402

from droplab.models import DropoutSpec, ModelSpec, build_model  # noqa: E402
from droplab.train import TrainConfig, Trainer  # noqa: E402


def load_sunspots() -> tuple[np.ndarray, np.ndarray]:
    """``(years, sunspot numbers)`` 1700-2008, as shipped with statsmodels."""
    try:
        from statsmodels.datasets import sunspots  # lighter than importing statsmodels.api
    except ImportError:
        raise SystemExit(
            "this example needs statsmodels (pip install -e '.[domains]' or pip install statsmodels)"
        ) from None
    df = sunspots.load_pandas().data
    return df["YEAR"].to_numpy(float), df["SUNACTIVITY"].to_numpy(float)


def make_windows(z: np.ndarray, window: int, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``(N, window, 1)`` and targets ``(N,)`` for the targets ``z[start:stop]``."""
    idx = np.arange(max(start, window), stop)
    x = np.stack([z[i - window : i] for i in idx])[:, :, None]
    return torch.tensor(x, dtype=torch.float32), torch.tensor(z[idx], dtype=torch.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("lstm", "gru"), default="lstm")
    parser.add_argument("--hidden", type=int, default=64, help="recurrent units (default 64)")
    parser.add_argument("--window", type=int, default=20, help="past steps seen (default 20)")
    parser.add_argument("--dropout", type=float, default=0.3,
                        help="rate of both dropout configurations (default 0.3)")
    parser.add_argument("--epochs", type=int, default=150, help="epochs (default 150)")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default 3e-3)")
    parser.add_argument("--out", default="out/forecast", help="folder for the forecast plot")
    parser.add_argument("--export-npz", metavar="FILE",
                        help="also write the windows to FILE (.npz) for `droplab train --config "
                        "configs/forecast_sunspots.toml`")
    add_common_args(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    epochs, seeds = (3, 2) if args.quick else (args.epochs, args.seeds)
    timer = Timer()

    t, y = load_sunspots()
    unit = "sunspot number"
    n = len(y)
    n_train, n_val = int(0.70 * n), int(0.15 * n)
    mean, std = y[:n_train].mean(), y[:n_train].std()
    z = (y - mean) / std  # standardized with training statistics only
    train = make_windows(z, args.window, 0, n_train)
    val = make_windows(z, args.window, n_train, n_train + n_val)
    test = make_windows(z, args.window, n_train + n_val, n)
    print(
        f"sunspots: {n} years, train {t[0]:.0f}-{t[n_train - 1]:.0f} ({len(train[0])} windows), "
        f"val {t[n_train]:.0f}-{t[n_train + n_val - 1]:.0f}, test {t[n_train + n_val]:.0f}-{t[-1]:.0f} "
        f"({len(test[0])} windows)"
    )
    if args.export_npz:
        os.makedirs(os.path.dirname(args.export_npz) or ".", exist_ok=True)
        np.savez(args.export_npz, x=np.concatenate([train[0], val[0]]).astype(np.float32),
                 y=np.concatenate([train[1], val[1]]).astype(np.float32),
                 x_test=test[0].numpy(), y_test=test[1].numpy())
        print(f"wrote {args.export_npz} (standardized: training mean {mean:.2f}, std {std:.2f})")

    # Persistence (tomorrow = today) puts the RMSE figures in context.
    persistence = float(np.sqrt(np.mean((y[n_train + n_val :] - y[n_train + n_val - 1 : -1]) ** 2)))

    p = args.dropout
    # A window has one feature, so no input dropout: a locked mask on a single input channel
    # would blank out whole series. Dropout goes on the LSTM's output sequence, either with a
    # fresh mask at every step (Zaremba et al. 2014) or with one mask per sequence (locked).
    configs = {
        "no dropout": {},
        f"per-step {p}": {"hidden": DropoutSpec(p, "dropout")},
        f"locked {p}": {"recurrent": DropoutSpec(p, "locked")},
    }
    rmse: dict[str, dict[int, float]] = {name: {} for name in configs}
    forecasts: dict[str, list[np.ndarray]] = {name: [] for name in configs}
    seconds: dict[str, float] = {name: 0.0 for name in configs}
    for name, dropout in configs.items():
        spec = ModelSpec(kind=args.model, hidden=(args.hidden,), dropout=dropout)
        for seed in range(seeds):
            model = build_model(spec, (args.window, 1), 1, seed=seed)
            config = TrainConfig(lr=args.lr, epochs=epochs, batch_size=32, seed=seed,
                                 eval_train=False, device="cpu")
            fit = Trainer(model, config).fit(train, val=val, test=test)
            rmse[name][seed] = fit.test["rmse"] * std  # back to the series' units
            seconds[name] += fit.seconds
            model.eval()
            with torch.no_grad():
                forecasts[name].append(model(test[0]).squeeze(1).numpy() * std + mean)

    print(f"persistence forecast (next = last) test RMSE: {persistence:.2f} {unit}")
    report(
        f"{args.model.upper()}({args.hidden}) one-step forecast of yearly sunspots, "
        f"{epochs} epochs",
        f"test RMSE ({unit})",
        rmse,
        baseline="no dropout",
        higher_is_better=False,
        digits=2,
        seconds=seconds,
    )
    path = plot(args, t, y, n - len(test[0]), forecasts, rmse, unit)
    print(f"forecast plot: {path}; total {timer.seconds:.0f} s")
    return 0


def plot(args, t, y, start, forecasts, rmse, unit) -> str:
    """Actual series and each configuration's mean one-step forecast over the test years."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(args.out, exist_ok=True)
    fig, ax = plt.subplots(figsize=(10, 4))
    lo = max(0, start - 60)
    ax.plot(t[lo:], y[lo:], color="black", lw=1.2, label="observed")
    for (name, preds), color in zip(forecasts.items(), ("tab:red", "tab:green", "tab:blue")):
        mean_rmse = np.mean(list(rmse[name].values()))
        ax.plot(t[start:], np.mean(preds, axis=0), color=color, lw=1.2,
                label=f"{name}: mean forecast of {len(preds)} seeds (mean RMSE {mean_rmse:.1f})")
    ax.axvline(t[start], color="grey", ls=":", lw=1)
    ax.set_xlabel("year")
    ax.set_ylabel(unit)
    ax.set_title(f"one-step-ahead {args.model.upper()} forecast of yearly sunspot numbers "
                 f"(test years right of the line)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = os.path.join(args.out, "forecast_sunspots.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    raise SystemExit(main())
