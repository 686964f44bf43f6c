"""Synthetic studies written through the Store API, with scripted curves whose diagnostics are known.

Scenarios (``make_study(path, name)``):

* ``"helps"`` -- ``dropout.hidden`` in {0.0, 0.2, 0.4, 0.6}, seeds 0-2, 10 epochs. No dropout
  overfits (validation minimum at epoch 4, then +25%); 0.2 is best; 0.4 lies within one
  standard error of it (the one-SE choice); 0.6 underfits (train-eval loss 2.2x the baseline's).
* ``"nohelp"`` -- {0.0, 0.3}: the same validation curve up to seed noise whose paired
  differences straddle zero; no overfitting.
* ``"messy"`` -- HTML in the study name, group and parameter values, an early-stopped run, a
  diverged run, a failed run and a run still running.

Each run's curve is the scenario's base curve plus a per-seed offset (constant over epochs, so
the best epoch is the base curve's): validation ``+ OFFSETS[s] * (1 + k / 2)`` for the k-th
configuration, train-eval ``+ OFFSETS[s] / 2``.
"""

from __future__ import annotations

import dataclasses

import pytest

from droplab.sweep.store import Store

OFFSETS = (-0.01, 0.0, 0.01)
SEEDS = (0, 1, 2)

HELPS = {
    0.0: dict(
        val=[1.00, 0.80, 0.66, 0.60, 0.62, 0.65, 0.68, 0.70, 0.72, 0.75],
        te=[0.90, 0.60, 0.40, 0.28, 0.20, 0.15, 0.11, 0.08, 0.06, 0.05],
    ),
    0.2: dict(
        val=[1.00, 0.78, 0.64, 0.56, 0.52, 0.50, 0.49, 0.48, 0.485, 0.49],
        te=[0.95, 0.70, 0.52, 0.42, 0.36, 0.32, 0.29, 0.27, 0.26, 0.25],
    ),
    0.4: dict(
        val=[1.02, 0.82, 0.68, 0.59, 0.54, 0.51, 0.50, 0.495, 0.485, 0.487],
        te=[1.00, 0.78, 0.62, 0.53, 0.47, 0.43, 0.40, 0.38, 0.37, 0.36],
    ),
    0.6: dict(
        val=[1.10, 0.95, 0.85, 0.78, 0.74, 0.72, 0.71, 0.705, 0.70, 0.70],
        te=[1.08, 0.93, 0.82, 0.74, 0.69, 0.66, 0.64, 0.63, 0.62, 0.62],
    ),
}

_NOHELP_VAL = [1.0, 0.8, 0.7, 0.65, 0.62, 0.60, 0.59, 0.585, 0.58, 0.578]
_NOHELP_TE = [0.95, 0.75, 0.64, 0.58, 0.55, 0.53, 0.52, 0.515, 0.51, 0.508]
NOHELP = {0.0: dict(val=_NOHELP_VAL, te=_NOHELP_TE), 0.3: dict(val=_NOHELP_VAL, te=[v + 0.02 for v in _NOHELP_TE])}
#: Extra per-seed validation shift of rate 0.3 in "nohelp" (mean -0.003: the CI includes zero).
NOHELP_DELTA = (-0.02, 0.015, -0.004)

#: User text that must stay text: HTML, an entity, and mathtext that matplotlib cannot parse.
EVIL = '<script>alert("x")</script>&$\\frac$'


@dataclasses.dataclass
class Scenario:
    path: object
    curves: dict
    axis: str = "dropout.hidden"


def _val_offset(k: int, s: int) -> float:
    return OFFSETS[s] * (1 + k / 2)


def run_curves(curves: dict, rate: float, seed: int, delta: tuple | None = None) -> dict:
    """The exact per-epoch values written for (rate, seed)."""
    k = list(curves).index(rate)
    extra = delta[seed] if delta else 0.0
    val = [v + _val_offset(k, seed) + extra for v in curves[rate]["val"]]
    te = [t + OFFSETS[seed] / 2 for t in curves[rate]["te"]]
    return {
        "val_loss": val,
        "train_eval_loss": te,
        "train_loss": [t + 0.15 * rate for t in te],
        "val_acc": [1 - 0.5 * v for v in val],
        "train_eval_acc": [1 - 0.5 * t for t in te],
    }


def _write(store, config_id, seed, rows, status="completed", n=None, best=None, rate=0.0):
    """One run as the engine records it: epoch rows, then result and cost of the final weights.

    Scripted runs "restore" their best epoch, so the result holds the best epoch's metrics.
    """
    run = store.start_run(config_id, seed)
    n = len(rows["val_loss"]) if n is None else n
    seconds = 0.1 * (1 + rate)
    for e in range(n):
        metrics = {k: v[e] for k, v in rows.items()}
        metrics["seconds"] = seconds
        metrics["peak_mem_mb"] = 100.0 + 10 * rate
        store.commit_epoch([(run, e + 1, metrics)])
    vals = rows["val_loss"][:n]
    if best is None:
        best = min(range(n), key=lambda i: (vals[i], i)) + 1
    result = {"best_epoch": best, "weights_epoch": best, "epochs_run": n, "restored": True,
              **{k: v[best - 1] for k, v in rows.items() if k.startswith(("val_", "train_eval_"))}}
    if status == "diverged":
        result.update({k: float("nan") for k in result if k.startswith(("val_", "train_eval_"))})
        result["restored"] = False
    if status is not None:
        store.finish_runs([(run, status, result, {"seconds": n * seconds, "peak_mem_mb": 100.0 + 10 * rate})])
    return run


def make_study(path, name: str = "helps") -> Scenario:
    """Write scenario ``name`` to ``path`` and describe it."""
    curves = {"helps": HELPS, "nohelp": NOHELP, "messy": HELPS}[name]
    with Store.open(path) as store:
        study_name = EVIL if name == "messy" else f"synthetic-{name}"
        spec = {"space": {"dropout.hidden": list(curves)}, "seeds": list(SEEDS),
                "train": {"epochs": 10}, "data": {"name": "synthetic", "subsample": 500}}
        if name == "messy":
            spec["note"] = EVIL
        store.init_study(study_name, spec)
        for k, rate in enumerate(curves):
            params = {"dropout.hidden": rate}
            group = "mlp"
            if name == "messy":
                params["model.activation"] = "relu" if k % 2 else EVIL
                group = EVIL
            key = ",".join(f"{a}={v}" for a, v in params.items())
            cid = store.add_configuration(key, params, group)
            for s in SEEDS:
                rows = run_curves(curves, rate, s, NOHELP_DELTA if (name == "nohelp" and rate == 0.3) else None)
                if name == "messy" and rate == 0.6 and s == 2:
                    rows["train_loss"][3] = float("nan")
                    _write(store, cid, s, {k2: v[:4] for k2, v in rows.items()}, status="diverged", n=4,
                           best=3)
                elif name == "messy" and rate == 0.0 and s == 1:
                    _write(store, cid, s, rows, status="early_stopped", n=9, best=4)
                elif name == "messy" and rate == 0.4 and s == 2:
                    _write(store, cid, s, rows, status="failed", n=2)
                elif name == "messy" and rate == 0.2 and s == 2:
                    _write(store, cid, s, rows, status=None, n=5)
                else:
                    _write(store, cid, s, rows, rate=rate)
        if name == "helps":  # what the engine stores at the end (messy has none: still running)
            keys = [c["key"] for c in store.configurations()]
            store.set_summary({"metric": "val_acc", "maximize": True, "best": keys[1], "one_se": keys[2]})
    return Scenario(path, curves)


@pytest.fixture
def study_factory():
    """``make_study(path, name)``: write a scenario (studies are cheap; reports are not)."""
    return make_study


@dataclasses.dataclass
class Report:
    scenario: Scenario
    html: object
    png_dir: object


def _report(tmp_path_factory, name: str) -> Report:
    from droplab.report import write_report

    d = tmp_path_factory.mktemp(name)
    scenario = make_study(d / f"{name}.db", name)
    html = write_report(scenario.path, d / "report.html", png_dir=d / "png")
    return Report(scenario, html, d / "png")


@pytest.fixture(scope="session")
def helps_report(tmp_path_factory):
    """The "helps" study rendered once per session (the page, and every figure as PNG)."""
    return _report(tmp_path_factory, "helps")


@pytest.fixture(scope="session")
def messy_report(tmp_path_factory):
    """The "messy" study (HTML in names, diverged/failed/running runs) rendered once per session."""
    return _report(tmp_path_factory, "messy")
