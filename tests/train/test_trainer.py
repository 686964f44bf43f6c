"""Trainer: determinism, resume, divergence, callbacks, penalties, schedules, configuration."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from droplab.errors import ConfigError, DataError
from droplab.regularize import SGDW
from droplab.train import (
    Callback,
    Checkpoint,
    EarlyStopping,
    ProgressBar,
    TrainConfig,
    Trainer,
    build_optimizer,
    fit,
)
from droplab.train.trainer import TIMING_KEYS


def data(n=300, d=8, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    w = torch.randn(d, classes, generator=g)
    y = (x @ w + 0.5 * torch.randn(n, classes, generator=g)).argmax(1)
    return x, y


def mlp(d=8, out=3, p=0.3, seed=0):
    torch.manual_seed(seed)  # tests may seed; library code never does
    return nn.Sequential(nn.Linear(d, 32), nn.ReLU(), nn.Dropout(p), nn.Linear(32, out))


def strip(history):
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in history]


# -- determinism ----------------------------------------------------------------------------
def test_same_seed_gives_bitwise_identical_history():
    x, y = data()
    cfg = TrainConfig(epochs=3, batch_size=32, lr=1e-2, seed=7)
    a = Trainer(mlp(), cfg).fit((x[:200], y[:200]), val=(x[200:], y[200:]))
    b = Trainer(mlp(), cfg).fit((x[:200], y[:200]), val=(x[200:], y[200:]))
    assert strip(a.history) == strip(b.history)
    assert a.val == b.val
    c = Trainer(mlp(), cfg.replace(seed=8)).fit((x[:200], y[:200]), val=(x[200:], y[200:]))
    assert strip(c.history) != strip(a.history)


def test_fit_leaves_callers_global_rng_untouched():
    x, y = data()
    net = mlp()
    before = torch.get_rng_state()
    Trainer(net, TrainConfig(epochs=1, seed=0)).fit((x, y))
    assert torch.equal(before, torch.get_rng_state())


def test_history_fields_classification():
    x, y = data()
    result = Trainer(mlp(), TrainConfig(epochs=2)).fit((x[:200], y[:200]), val=(x[200:], y[200:]))
    row = result.history[0]
    assert set(row) == {
        "epoch",
        "train_loss",
        "train_eval_loss",
        "train_eval_acc",
        "val_loss",
        "val_acc",
        "lr",
        "seconds",
        "peak_mem_mb",
    }
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert 0 <= row["val_acc"] <= 1 and row["seconds"] > 0 and row["peak_mem_mb"] > 0
    assert result.task == "classification" and result.stop_reason == "completed"
    assert result.best_epoch in (1, 2) and not result.restored
    summary = result.summary()
    assert summary["val_loss"] == result.val["loss"] and summary["test_loss"] is None


def test_train_loss_is_as_trained_and_eval_train_is_eval_mode():
    x, y = data()
    # p close to 1 cripples the network in training mode only
    result = Trainer(mlp(p=0.9), TrainConfig(epochs=3, lr=1e-2)).fit((x, y))
    for row in result.history:
        assert row["train_loss"] > row["train_eval_loss"]
    result = Trainer(mlp(), TrainConfig(epochs=1, eval_train=False)).fit((x, y))
    assert "train_eval_loss" not in result.history[0] and "val_loss" not in result.history[0]


def test_regression_reports_rmse():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 5, generator=g)
    y = x @ torch.randn(5, generator=g) + 0.1 * torch.randn(200, generator=g)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 1))
    result = Trainer(net, TrainConfig(epochs=5, lr=1e-2, device="cpu")).fit(
        (x[:150], y[:150]), val=(x[150:], y[150:])
    )
    assert result.task == "regression"
    row = result.history[-1]
    assert row["val_rmse"] == pytest.approx(math.sqrt(row["val_loss"]))
    assert row["val_loss"] < result.history[0]["val_loss"]
    with torch.no_grad():
        mse = F.mse_loss(net(x[150:]).squeeze(1), y[150:]).item()
    assert result.val["loss"] == pytest.approx(mse, rel=1e-5)


def test_test_split_is_evaluated_once_at_the_end():
    x, y = data()
    seen = []

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = mlp()

        def forward(self, inp):
            seen.append(len(inp))
            return self.net(inp)

    Trainer(Spy(), TrainConfig(epochs=3, batch_size=50)).fit(
        (x[:200], y[:200]), val=(x[200:260], y[200:260]), test=(x[260:297], y[260:297])
    )
    assert seen.count(37) == 1  # the only batch of 37 examples is the test split
    assert seen.count(60) == 3 + 1  # validation every epoch, and once at the end


# -- checkpoints and resume -----------------------------------------------------------------
def test_resume_continues_bitwise_identically(tmp_path):
    x, y = data(seed=3)
    cfg = TrainConfig(
        optimizer="sgd",
        momentum=0.9,
        lr=5e-2,
        epochs=4,
        batch_size=32,
        lr_schedule="onecycle",
        early_stopping="patience",
        patience=50,
        seed=11,
    )
    splits = ((x[:200], y[:200]),)
    kw = dict(val=(x[200:], y[200:]))
    ckpt = Checkpoint(tmp_path, filename="epoch{epoch}.pt")
    full_model = mlp(seed=0)
    full = Trainer(full_model, cfg, callbacks=[ckpt]).fit(*splits, **kw)
    assert sorted(os.listdir(tmp_path)) == [f"epoch{e}.pt" for e in range(1, 5)]
    saved = torch.load(tmp_path / "epoch2.pt", weights_only=True)
    assert saved["epoch"] == 2 and len(saved["history"]) == 2

    resumed_model = mlp(seed=99)  # different initial weights: the checkpoint must replace them
    resumed = Trainer(resumed_model, cfg, callbacks=[Checkpoint(tmp_path / "b")]).fit(
        *splits, **kw, resume=tmp_path / "epoch2.pt"
    )
    assert strip(resumed.history) == strip(full.history)
    assert resumed.best_epoch == full.best_epoch and resumed.val == full.val
    for a, b in zip(
        full_model.state_dict().values(), resumed_model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_config_checkpoint_dir_and_resume_errors(tmp_path):
    x, y = data()
    cfg = TrainConfig(epochs=2, checkpoint_dir=str(tmp_path / "ck"))
    trainer = Trainer(mlp(), cfg)
    assert isinstance(trainer.callbacks[-1], Checkpoint)
    trainer.fit((x, y))
    assert os.path.isfile(tmp_path / "ck" / "last.pt")
    with pytest.raises(ConfigError, match="checkpoint not found: .*nope.pt"):
        Trainer(mlp(), cfg).fit((x, y), resume=tmp_path / "nope.pt")
    with pytest.raises(ConfigError, match="does not fit this model"):
        Trainer(mlp(out=4), cfg).fit((x, y), resume=tmp_path / "ck" / "last.pt")
    with pytest.raises(ConfigError, match="different lr_schedule"):
        Trainer(mlp(), cfg.replace(lr_schedule="cosine")).fit(
            (x, y), resume=tmp_path / "ck" / "last.pt"
        )


# -- stopping -------------------------------------------------------------------------------
def test_nan_loss_ends_as_diverged_without_raising():
    g = torch.Generator().manual_seed(0)
    x = 100 * torch.randn(100, 4, generator=g)
    y = torch.randn(100, generator=g)
    net = nn.Linear(4, 1)
    result = fit(net, (x, y), val=(x, y), optimizer="sgd", lr=10.0, epochs=5, batch_size=10)
    assert result.stop_reason == "diverged" and result.epochs_run == 1
    assert not math.isfinite(result.history[-1]["train_loss"])
    assert result.summary()["val_loss"] is None  # non-finite -> null in JSON


def test_callback_stop_and_interrupt():
    x, y = data()

    class StopAt2(Callback):
        def on_epoch_end(self, trainer, *, epoch, **kwargs):
            if epoch == 2:
                trainer.should_stop = True

    class CtrlC(Callback):
        def on_epoch_end(self, trainer, *, epoch, **kwargs):
            if epoch == 2:
                raise KeyboardInterrupt

    result = Trainer(mlp(), TrainConfig(epochs=5), [StopAt2()]).fit((x, y))
    assert (result.stop_reason, result.epochs_run) == ("early_stopping", 2)
    result = Trainer(mlp(), TrainConfig(epochs=5), [CtrlC()]).fit((x, y), val=(x, y))
    assert (result.stop_reason, result.epochs_run) == ("interrupted", 2)
    assert result.val is not None


def test_hooks_order_and_batch_hook():
    x, y = data(n=100)
    calls = []

    class Recorder(Callback):
        def on_fit_start(self, trainer, **kw):
            calls.append("fit_start")

        def on_epoch_start(self, trainer, *, epoch, **kw):
            calls.append(f"epoch_start{epoch}")

        def on_batch_end(self, trainer, *, batch, loss, **kw):
            assert loss.dim() == 0 and not loss.requires_grad
            calls.append(f"batch{batch}")

        def on_epoch_end(self, trainer, *, epoch, logs, **kw):
            assert logs is trainer.history[-1]
            calls.append(f"epoch_end{epoch}")

        def on_fit_end(self, trainer, *, stop_reason, **kw):
            calls.append(f"fit_end:{stop_reason}")

    Trainer(mlp(), TrainConfig(epochs=2, batch_size=40), [Recorder()]).fit((x, y))
    assert calls == [
        "fit_start",
        "epoch_start1",
        "batch0",
        "batch1",
        "batch2",
        "epoch_end1",
        "epoch_start2",
        "batch0",
        "batch1",
        "batch2",
        "epoch_end2",
        "fit_end:completed",
    ]


def test_progress_bar_is_silent_when_not_a_terminal(capsys):
    x, y = data(n=60)
    bar = ProgressBar()
    assert not bar.enabled  # pytest captures stderr: not a TTY
    Trainer(mlp(), TrainConfig(epochs=1), [bar]).fit((x, y))
    assert capsys.readouterr().err == ""
    assert not ProgressBar(quiet=True).enabled


def test_progress_bar_draws_on_a_terminal_console():
    import io

    from rich.console import Console

    buffer = io.StringIO()
    bar = ProgressBar(console=Console(file=buffer, force_terminal=True, width=120))
    x, y = data(n=60)
    Trainer(mlp(), TrainConfig(epochs=2), [bar]).fit((x, y), val=(x, y))
    assert "2/2" in buffer.getvalue() and "val_loss=" in buffer.getvalue()


# -- regularizers and optimizers ------------------------------------------------------------
def test_l2_penalty_enters_the_gradient_on_weights_only():
    x, y = data(n=50)
    torch.manual_seed(0)
    net = nn.Linear(8, 3)
    w0, b0 = net.weight.detach().clone(), net.bias.detach().clone()
    lr, l2 = 0.1, 0.5
    fit(net, (x, y), optimizer="sgd", lr=lr, l2=l2, epochs=1, batch_size=50, eval_train=False, device="cpu")
    w = w0.clone().requires_grad_(True)
    b = b0.clone().requires_grad_(True)
    loss = F.cross_entropy(x @ w.T + b, y)
    gw, gb = torch.autograd.grad(loss, (w, b))
    assert torch.allclose(net.weight, w0 - lr * (gw + 2 * l2 * w0), atol=1e-6)
    assert torch.allclose(net.bias, b0 - lr * gb, atol=1e-6)  # biases are not penalized


def test_l1_penalty_and_max_norm():
    x, y = data(n=50)
    torch.manual_seed(0)
    net = nn.Linear(8, 3)
    w0, b0 = net.weight.detach().clone(), net.bias.detach().clone()
    fit(net, (x, y), optimizer="sgd", lr=0.1, l1=0.2, epochs=1, batch_size=50, eval_train=False, device="cpu")
    w = w0.clone().requires_grad_(True)
    (gw,) = torch.autograd.grad(F.cross_entropy(x @ w.T + b0, y), (w,))
    assert torch.allclose(net.weight, w0 - 0.1 * (gw + 0.2 * torch.sign(w0)), atol=1e-6)

    net = mlp()
    fit(net, (x, y), optimizer="sgd", lr=1.0, max_norm=0.5, epochs=2, batch_size=10, device="cpu")
    for layer in (net[0], net[3]):
        assert layer.weight.norm(dim=1).max() <= 0.5 + 1e-5


def test_optimizer_choice_and_decoupled_decay():
    net = mlp()
    assert isinstance(build_optimizer(net, TrainConfig(optimizer="sgd", weight_decay=1e-2)), SGDW)
    assert type(build_optimizer(net, TrainConfig(optimizer="sgd"))) is torch.optim.SGD
    opt = build_optimizer(net, TrainConfig(optimizer="adamw", weight_decay=0.1))
    assert isinstance(opt, torch.optim.AdamW)
    decays = sorted(g["weight_decay"] for g in opt.param_groups)
    n_decayed = sum(len(g["params"]) for g in opt.param_groups if g["weight_decay"] > 0)
    assert decays == [0.0, 0.1] and n_decayed == 2  # two Linear weights; biases not decayed
    assert isinstance(
        build_optimizer(net, TrainConfig(optimizer="rmsprop", momentum=0.5)), torch.optim.RMSprop
    )
    with pytest.raises(ConfigError, match="use optimizer 'adamw' \\(decoupled\\) or l2"):
        TrainConfig(optimizer="adam", weight_decay=1e-4)


@pytest.mark.parametrize("schedule", ["step", "cosine", "onecycle"])
def test_lr_schedules(schedule):
    x, y = data(n=40)
    cfg = TrainConfig(
        epochs=4,
        lr=0.1,
        optimizer="sgd",
        lr_schedule=schedule,
        step_size=2,
        gamma=0.5,
        batch_size=20,
    )
    lrs = [row["lr"] for row in fit(mlp(), (x, y), cfg, eval_train=False).history]
    if schedule == "step":
        assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.05])
    elif schedule == "cosine":
        assert lrs == pytest.approx([0.1 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)])
    else:
        assert lrs[0] == pytest.approx(0.1 / 25)  # OneCycle starts at max_lr / div_factor
        assert max(lrs) <= 0.1 + 1e-12


def test_concrete_dropout_regularizer_is_added():
    from droplab.models import DropoutSpec, ModelSpec, build_model
    from droplab.nn import ConcreteDropout

    x, y = data(n=100)
    spec = ModelSpec(kind="mlp", hidden=(16,), dropout={"hidden": DropoutSpec(0.2, "concrete")})
    net = build_model(spec, (8,), 3, seed=0)
    calls = []
    original = net.concrete_regularization

    def counted():
        calls.append(1)
        return original()

    net.concrete_regularization = counted
    (drop,) = [m for m in net.modules() if isinstance(m, ConcreteDropout)]
    p0 = drop.p
    fit(net, (x, y), epochs=2, batch_size=25, lr=1e-2, eval_train=False)
    assert len(calls) == 8  # once per step
    assert drop.p != p0  # the rate is learned


def test_concrete_dropout_without_regularizer_warns():
    from droplab.errors import DroplabWarning
    from droplab.nn import ConcreteDropout

    x, y = data(n=50)
    net = nn.Sequential(nn.Linear(8, 16), ConcreteDropout(), nn.Linear(16, 3))
    with pytest.warns(DroplabWarning, match="no concrete_regularization"):
        fit(net, (x, y), epochs=1)


# -- input checks ---------------------------------------------------------------------------
def test_data_errors():
    x, y = data()
    with pytest.raises(
        DataError,
        match=r"same number of examples, got x of shape \(300, 8\) and y of shape \(299,\)",
    ):
        fit(mlp(), (x, y[:-1]))
    with pytest.raises(DataError, match="labels range over 0..2 but the model has 2 outputs"):
        fit(mlp(out=2), (x, y))
    with pytest.raises(
        DataError, match="classification targets must be a 1-D tensor of integer class ids"
    ):
        fit(mlp(), (x, y.float()), task="classification")
    with pytest.raises(DataError, match=r"must be a pair \(x, y\)"):
        fit(mlp(), x)


def test_splits_object_is_accepted():
    x, y = data()

    class Splits:
        task = "classification"
        x_train, y_train = x[:200], y[:200]
        x_val, y_val = x[200:250], y[200:250]
        x_test, y_test = x[250:], y[250:]

    result = Trainer(mlp(), TrainConfig(epochs=1)).fit(Splits())
    assert result.test is not None and result.val is not None and "val_acc" in result.history[0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(lrr=0.1), r"unknown key 'lrr' in \[train\] \(did you mean 'lr'\?\)"),
        (dict(lr=-0.1), r"lr must be a finite number > 0, got -0.1"),
        (
            dict(optimizer="adan"),
            r"optimizer must be one of .*got 'adan' \(did you mean 'adam'\?\)",
        ),
        (dict(momentum=0.9), r"momentum applies to optimizer 'sgd' or 'rmsprop'"),
        (dict(optimizer="sgd", nesterov=True), r"nesterov needs optimizer 'sgd' with momentum > 0"),
        (dict(patience=5), r"patience is an early-stopping option; set early_stopping too"),
        (
            dict(early_stopping="gl", patience=3),
            r"patience is an early-stopping option of 'patience', not 'gl'",
        ),
        (dict(early_stopping="pq", alpha=-1.0), r"alpha must be a finite number > 0, got -1.0"),
        (dict(epochs=0), r"epochs must be a positive integer, got 0"),
        (dict(gamma=2.0), r"gamma must be in \(0, 1\], got 2.0"),
        (dict(lr_schedule="cos"), r"lr_schedule must be one of .*\(did you mean 'cosine'\?\)"),
        (dict(eval_train="yes"), r"eval_train must be true or false, got 'yes'"),
        (dict(seed=-1), r"seed must be a non-negative integer, got -1"),
    ],
)
def test_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(kwargs)


def test_patience_with_early_stopping_is_fine_and_round_trips():
    cfg = TrainConfig.from_dict({"early_stopping": "patience", "patience": 3, "lr": 1})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert isinstance(Trainer(mlp(), cfg).callbacks[0], EarlyStopping)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_but_missing():
    with pytest.raises(
        ConfigError, match="device 'cuda' was requested but torch sees no CUDA device"
    ):
        TrainConfig(device="cuda")


# -- CUDA (skipped without a GPU) ------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_is_deterministic_resumes_bitwise_and_reports_gpu_memory(tmp_path):
    x, y = data()
    cfg = TrainConfig(epochs=4, batch_size=32, lr=1e-2, seed=11, device="cuda")
    splits, kw = ((x[:200], y[:200]),), dict(val=(x[200:], y[200:]))
    full_model = mlp(seed=0)
    full = Trainer(full_model, cfg, callbacks=[Checkpoint(tmp_path, filename="epoch{epoch}.pt")]).fit(*splits, **kw)
    assert next(full_model.parameters()).device.type == "cuda"
    assert all(row["peak_mem_mb"] > 0 for row in full.history)
    again = Trainer(mlp(seed=0), cfg).fit(*splits, **kw)
    assert strip(again.history) == strip(full.history) and again.val == full.val
    resumed_model = mlp(seed=99)
    resumed = Trainer(resumed_model, cfg).fit(*splits, **kw, resume=tmp_path / "epoch2.pt")
    assert strip(resumed.history) == strip(full.history)
    for a, b in zip(full_model.state_dict().values(), resumed_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
