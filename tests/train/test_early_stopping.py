"""EarlyStopping: scripted metric sequences fed straight into the hooks (STYLE convention 14),
checked against hand computations of Prechelt's (1998) criteria, plus one real training run."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from droplab.errors import ConfigError
from droplab.train import EarlyStopping, TrainConfig, Trainer


class FakeTrainer:
    """Just what a callback may touch: model, should_stop, stop_reason."""

    def __init__(self, model: nn.Module | None = None) -> None:
        self.model = model
        self.should_stop = False
        self.stop_reason = None


def run(es: EarlyStopping, val, train=None, *, monitor="val_loss", trainer=None):
    """Feed the sequence epoch by epoch; return the epoch at which it asked to stop (or None)."""
    trainer = trainer or FakeTrainer()
    es.on_fit_start(trainer)
    for i, v in enumerate(val):
        logs = {monitor: v, "train_loss": 1.0 if train is None else train[i]}
        es.on_epoch_end(trainer, epoch=i + 1, logs=logs)
        if trainer.should_stop:
            return i + 1
    return None


# -- patience -------------------------------------------------------------------------------
def test_patience_counts_epochs_without_improvement():
    es = EarlyStopping(patience=2)
    # best 0.9 at epoch 2; epochs 3 and 4 do not improve -> wait reaches 2 at epoch 4
    assert run(es, [1.0, 0.9, 0.95, 0.92, 0.91]) == 4
    assert es.best_epoch_ == 2 and es.best_ == 0.9 and es.stop_reason_ == "early_stopping"


def test_equal_value_is_not_an_improvement():
    es = EarlyStopping(patience=1)
    assert run(es, [1.0, 1.0]) == 2
    assert es.best_epoch_ == 1


def test_patience_zero_stops_at_first_non_improvement():
    assert run(EarlyStopping(patience=0), [3.0, 2.0, 1.0, 1.5]) == 4


def test_min_delta_absolute_vs_relative():
    val = [10.0, 9.5, 8.9, 8.5, 8.1]
    # absolute 0.1: every step improves by >= 0.4 -> never stops
    assert run(EarlyStopping(patience=2, min_delta=0.1), val) is None
    # relative 0.1: needs value < best - 0.1*|best|
    # e2: 9.5 < 9.0? no (wait 1); e3: 8.9 < 9.0 yes (best 8.9);
    # e4: 8.5 < 8.01? no (1); e5: 8.1 < 8.01? no (2) -> stop at 5
    es = EarlyStopping(patience=2, min_delta=0.1, min_delta_mode="relative")
    assert run(es, val) == 5
    assert es.best_epoch_ == 3


def test_min_delta_absolute_small_improvements_do_not_count():
    # min_delta 0.05: e2 0.97 < 0.95? no; e3 0.94 < 0.95 yes; e4 0.93 < 0.89? no -> patience 1 stops at 2
    assert run(EarlyStopping(patience=1, min_delta=0.05), [1.0, 0.97, 0.94]) == 2
    es = EarlyStopping(patience=2, min_delta=0.05)
    assert run(es, [1.0, 0.97, 0.94, 0.93, 0.80]) is None
    assert es.best_epoch_ == 5


def test_max_mode_and_auto_mode():
    es = EarlyStopping(monitor="val_acc", patience=2)
    assert es.mode == "max"
    assert run(es, [0.5, 0.6, 0.6, 0.59], monitor="val_acc") == 4
    assert es.best_epoch_ == 2
    assert EarlyStopping(monitor="val_loss").mode == "min"
    assert EarlyStopping(monitor="val_rmse").mode == "min"
    with pytest.raises(ConfigError, match="pass mode='min' or mode='max'"):
        EarlyStopping(monitor="val_widget")
    assert EarlyStopping(monitor="val_widget", mode="max").mode == "max"


def test_baseline_must_be_beaten_to_reset_patience():
    val = [0.9, 0.8, 0.7, 0.6]
    # every epoch improves on the best but none beats 0.5: wait 1, 2, 3 -> stop at 3
    es = EarlyStopping(patience=3, baseline=0.5)
    assert run(es, val) == 3
    assert es.best_epoch_ == 3  # the best is still tracked for restoring
    assert run(EarlyStopping(patience=3), val) is None


def test_start_from_epoch_ignores_warmup():
    val = [0.1, 0.2, 1.0, 1.1, 1.2]
    assert run(EarlyStopping(patience=2), val) == 3
    es = EarlyStopping(patience=2, start_from_epoch=2)
    assert run(es, val) == 5
    assert es.best_epoch_ == 3


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nonfinite_stops_as_diverged(bad):
    trainer = FakeTrainer()
    es = EarlyStopping(patience=5)
    assert run(es, [1.0, bad], trainer=trainer) == 2
    assert trainer.stop_reason == "diverged" and es.best_epoch_ == 1
    es = EarlyStopping(patience=5, stop_on_nonfinite=False)
    assert run(es, [1.0, bad, 2.0]) is None
    assert es.best_ == 1.0


def test_divergence_threshold():
    trainer = FakeTrainer()
    assert run(EarlyStopping(divergence_threshold=5.0), [1.0, 2.0, 6.0], trainer=trainer) == 3
    assert trainer.stop_reason == "diverged"
    es = EarlyStopping(monitor="val_acc", divergence_threshold=0.2)
    assert run(es, [0.5, 0.3, 0.1], monitor="val_acc") == 3


# -- Prechelt 1998 ----------------------------------------------------------------------------
def test_gl_generalization_loss():
    val = [1.0, 0.8, 0.82, 0.85, 0.83]
    # E_opt = 0.8 from epoch 2; GL(3) = 100*(0.82/0.8 - 1) = 2.5; GL(4) = 6.25 > 5 -> stop at 4
    es = EarlyStopping(criterion="gl", alpha=5.0)
    assert run(es, val) == 4
    assert es.gl_ == pytest.approx(6.25)
    assert es.best_epoch_ == 2
    es = EarlyStopping(criterion="gl", alpha=7.0)
    assert run(es, val) is None
    assert es.gl_ == pytest.approx(100 * (0.83 / 0.8 - 1))  # 3.75


def test_gl_default_alpha_is_5():
    es = EarlyStopping(criterion="gl")
    assert es.alpha == 5.0
    # GL(2) = 4 is not > 5; 6 is
    assert run(es, [1.0, 1.04]) is None
    assert run(EarlyStopping(criterion="gl"), [1.0, 1.06]) == 2


TRAIN = [1.0, 0.8, 0.7, 0.65, 0.6, 0.58, 0.57, 0.565, 0.56, 0.558]
VAL = [1.0, 0.9, 0.85, 0.84, 0.86, 0.87, 0.88, 0.89, 0.9, 0.91]


def test_pq_quotient_at_strip_ends():
    # t=5: E_opt=0.84, GL=100*(0.86/0.84-1)=2.381; P5=1000*(3.75/(5*0.6)-1)=250; PQ=0.0095
    # t=10: GL=100*(0.91/0.84-1)=8.333; P5=1000*(2.833/(5*0.558)-1)=15.412; PQ=0.5407
    es = EarlyStopping(criterion="pq", alpha=0.5, strip_length=5)
    assert run(es, VAL, TRAIN) == 10
    gl10 = 100 * (0.91 / 0.84 - 1)
    p10 = 1000 * (2.833 / (5 * 0.558) - 1)
    assert es.gl_ == pytest.approx(gl10) and es.pk_ == pytest.approx(p10)
    assert gl10 / p10 == pytest.approx(0.5407, abs=1e-4)
    assert run(EarlyStopping(criterion="pq", alpha=0.6), VAL, TRAIN) is None


def test_pq_training_progress_first_strip():
    es = EarlyStopping(criterion="pq", alpha=0.5)
    run(es, VAL[:5], TRAIN[:5])
    assert es.pk_ == pytest.approx(250.0)


def test_pq_only_evaluated_at_strip_ends():
    # GL/P_k would exceed alpha at epoch 7 if P_k were computed every epoch: the validation
    # error jumps while the training error is flat. With k=5 the first chance after epoch 5 is 10.
    train = [1.0, 0.9, 0.8, 0.7, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]
    val = [1.0, 0.9, 0.8, 0.7, 0.6, 0.6, 0.9, 0.9, 0.9, 0.9]
    es = EarlyStopping(criterion="pq", alpha=0.5, strip_length=5)
    # t=5: GL=0 -> 0; t=10: P_k = 0 (flat) and GL = 50 > 0 -> infinite quotient -> stop
    assert run(es, val, train) == 10
    assert es.pk_ == 0.0


def test_up_successive_strip_end_rises():
    # k=2: strip ends 2, 4, 6, 8 see 0.9, 0.95, 0.96, 0.97 (mid-strip values are lower and ignored)
    val = [1.0, 0.9, 0.8, 0.95, 0.7, 0.96, 0.5, 0.97]
    assert run(EarlyStopping(criterion="up", s=2, strip_length=2), val) == 6
    assert run(EarlyStopping(criterion="up", s=3, strip_length=2), val) == 8
    assert run(EarlyStopping(criterion="up", s=4, strip_length=2), val) is None


def test_up_counter_resets_when_error_does_not_rise():
    # strip ends (k=1 -> every epoch): 0.9, 0.95 (rise), 0.93 (reset), 0.94 (1), 0.95 (2)
    es = EarlyStopping(criterion="up", s=2, strip_length=1)
    assert run(es, [0.9, 0.95, 0.93, 0.94, 0.95]) == 5
    assert es.best_epoch_ == 1


def test_up_cannot_stop_before_s_plus_one_strips():
    # rising every epoch; k=5, s=4 (defaults): first comparison at 10, fourth rise at 25
    es = EarlyStopping(criterion="up")
    assert (es.strip_length, es.s) == (5, 4)
    assert run(es, [1.0 + 0.1 * t for t in range(40)]) == 25


# -- weights and state ----------------------------------------------------------------------
def _set_weights(model: nn.Linear, value: float) -> None:
    with torch.no_grad():
        model.weight.fill_(value)
        model.bias.fill_(-value)


def test_restores_best_weights_at_fit_end_even_without_a_stop():
    model = nn.Linear(3, 2)
    trainer = FakeTrainer(model)
    es = EarlyStopping(patience=10)
    es.on_fit_start(trainer)
    for epoch, val in enumerate([1.0, 0.5, 0.7, 0.8], start=1):
        _set_weights(model, float(epoch))
        es.on_epoch_end(trainer, epoch=epoch, logs={"val_loss": val})
    assert not trainer.should_stop
    es.on_fit_end(trainer, stop_reason="completed")
    assert es.restored_ and torch.all(model.weight == 2.0) and torch.all(model.bias == -2.0)


def test_restore_best_weights_false_keeps_last():
    model = nn.Linear(3, 2)
    trainer = FakeTrainer(model)
    es = EarlyStopping(patience=10, restore_best_weights=False)
    es.on_fit_start(trainer)
    for epoch, val in enumerate([1.0, 0.5, 0.7], start=1):
        _set_weights(model, float(epoch))
        es.on_epoch_end(trainer, epoch=epoch, logs={"val_loss": val})
    es.on_fit_end(trainer, stop_reason="completed")
    assert not es.restored_ and torch.all(model.weight == 3.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(patience=3),
        dict(criterion="gl", alpha=3.0),
        dict(criterion="pq", alpha=0.3),
        dict(criterion="up", s=2, strip_length=2),
    ],
)
def test_state_dict_survives_save_and_load(kwargs):
    val = VAL + [0.92, 0.93, 0.94, 0.95, 0.96]
    train = TRAIN + [0.557] * 5
    full = EarlyStopping(**kwargs)
    stop_full = run(full, val, train, trainer=FakeTrainer(nn.Linear(2, 2)))
    assert stop_full is not None

    cut = 3
    first = EarlyStopping(**kwargs)
    model = nn.Linear(2, 2)
    trainer = FakeTrainer(model)
    first.on_fit_start(trainer)
    for i in range(cut):
        first.on_epoch_end(trainer, epoch=i + 1, logs={"val_loss": val[i], "train_loss": train[i]})
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    second = EarlyStopping(**kwargs)
    second.on_fit_start(trainer)
    second.load_state_dict(torch.load(buffer, weights_only=True))
    stop = None
    for i in range(cut, len(val)):
        second.on_epoch_end(trainer, epoch=i + 1, logs={"val_loss": val[i], "train_loss": train[i]})
        if trainer.should_stop:
            stop = i + 1
            break
    assert stop == stop_full
    assert second.best_epoch_ == full.best_epoch_


def test_on_fit_start_resets_state():
    es = EarlyStopping(patience=1)
    assert run(es, [1.0, 2.0]) == 2
    assert run(es, [1.0, 0.5, 0.4]) is None
    assert es.wait_ == 0 and es.best_epoch_ == 3 and es.stopped_epoch_ is None


# -- errors ---------------------------------------------------------------------------------
def test_missing_monitor_key_says_what_is_recorded():
    es = EarlyStopping(monitor="val_los", mode="min")
    es.on_fit_start(FakeTrainer())
    with pytest.raises(
        ConfigError, match=r"'val_los'.*did you mean 'val_loss'.*recorded: train_loss, val_loss"
    ):
        es.on_epoch_end(FakeTrainer(), epoch=1, logs={"val_loss": 1.0, "train_loss": 1.0})


def test_negative_error_rejected_by_prechelt_criteria():
    es = EarlyStopping(criterion="gl")
    with pytest.raises(ConfigError, match="non-negative error; val_loss = -0.5 at epoch 1"):
        run(es, [-0.5])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mode="down"), r"mode must be one of 'auto', 'min', 'max'; got 'down'"),
        (dict(criterion="pqq"), r"criterion must be one of .*got 'pqq' \(did you mean 'pq'\?\)"),
        (dict(patience=-1), r"patience must be a non-negative integer, got -1"),
        (dict(min_delta=-0.1), r"min_delta must be a finite number >= 0, got -0.1"),
        (dict(min_delta_mode="rel"), r"min_delta_mode must be one of 'absolute', 'relative'"),
        (
            dict(criterion="gl", monitor="val_acc"),
            r"needs an error to minimize; monitor 'val_acc' is in mode 'max'",
        ),
        (dict(alpha=2.0), r"alpha applies to criterion 'gl' or 'pq', not 'patience'"),
        (dict(criterion="up", alpha=2.0), r"alpha applies to criterion 'gl' or 'pq', not 'up'"),
        (dict(criterion="gl", s=2), r"s applies to criterion 'up', not 'gl'"),
        (
            dict(criterion="gl", min_delta=0.1),
            r"min_delta and baseline apply to criterion 'patience'",
        ),
        (dict(criterion="pq", alpha=0), r"alpha must be a finite number > 0, got 0"),
        (dict(criterion="up", strip_length=0), r"strip_length must be a positive integer, got 0"),
        (dict(baseline=math.nan), r"baseline must be a finite number or None"),
        (dict(restore_best_weights=1), r"restore_best_weights must be True or False, got 1"),
    ],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        EarlyStopping(**kwargs)


def test_repr_shows_behaviour():
    assert "criterion='pq'" in repr(EarlyStopping(criterion="pq")) and "alpha=3.0" in repr(
        EarlyStopping(criterion="pq")
    )
    assert "patience=4" in repr(EarlyStopping(patience=4))


# -- one tiny real training run --------------------------------------------------------------
def test_real_run_stops_early_and_restores_best_epoch():
    g = torch.Generator().manual_seed(0)
    # 40 noisy examples, a wide net and a large learning rate: it overfits within a few epochs.
    x = torch.randn(40, 10, generator=g)
    y = torch.randint(0, 2, (40,), generator=g)
    xv = torch.randn(200, 10, generator=g)
    yv = torch.randint(0, 2, (200,), generator=g)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 256), nn.ReLU(), nn.Linear(256, 2))
    cfg = TrainConfig(
        epochs=200, batch_size=10, lr=1e-2, early_stopping="patience", patience=3, eval_train=False
    )
    result = Trainer(net, cfg).fit((x, y), val=(xv, yv))
    assert result.stop_reason == "early_stopping"
    assert result.epochs_run < 200 and result.restored
    vals = [row["val_loss"] for row in result.history]
    best = result.best_epoch
    assert vals[best - 1] == min(vals)
    assert result.epochs_run == best + 3  # patience 3 after the best epoch
    # the final model is the best epoch's: its validation loss is reproduced exactly
    assert result.val["loss"] == vals[best - 1]
