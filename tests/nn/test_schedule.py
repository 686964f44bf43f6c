"""Rate schedules: the rate each kind gives at each time, the text form, depth, the grammar."""

from __future__ import annotations

import math

import pytest

from droplab.errors import ConfigError
from droplab.models import ModelSpec, parse_dropout
from droplab.nn.schedule import RateSchedule, depth_rates, parse_schedule_setting


def test_each_kind_gives_the_rate_it_documents():
    p = 0.3
    assert [RateSchedule().rate(p, t) for t in range(4)] == [p] * 4
    assert [RateSchedule.parse("early@3").rate(p, t) for t in range(6)] == [p, p, p, 0, 0, 0]
    assert [RateSchedule.parse("late@3").rate(p, t) for t in range(6)] == [0, 0, 0, p, p, p]
    assert [RateSchedule.parse("early@0").rate(p, t) for t in range(2)] == [0, 0]
    lin = RateSchedule.parse("linear@4")
    assert [lin.rate(p, t) for t in range(6)] == pytest.approx([0, p / 4, p / 2, 3 * p / 4, p, p])
    cos = RateSchedule.parse("cosine@4")
    expect = [p * (1 - math.cos(math.pi * min(t / 4, 1))) / 2 for t in range(6)]
    assert [cos.rate(p, t) for t in range(6)] == pytest.approx(expect)
    assert cos.rate(p, 2) == pytest.approx(p / 2) and cos.rate(p, 9) == pytest.approx(p)


def test_curriculum_is_morerio_retain_probability():
    # Morerio et al. 2017: theta(t) = (1 - theta_f) exp(-gamma t) + theta_f; rate = 1 - theta.
    gamma, p = 0.7, 0.4
    theta_f = 1 - p
    s = RateSchedule.parse("curriculum@0.7")
    for t in range(10):
        theta = (1 - theta_f) * math.exp(-gamma * t) + theta_f
        assert s.rate(p, t) == pytest.approx(1 - theta, abs=1e-12)
    assert s.rate(p, 0) == 0.0 and s.rate(p, 1000) == pytest.approx(p)


@pytest.mark.parametrize(
    "text", ["constant", "early@5", "late@300step", "linear@10", "cosine@2step", "curriculum@0.002step"]
)
def test_text_round_trips(text):
    s = RateSchedule.parse(text)
    assert str(s) == text and RateSchedule.parse(str(s)) == s


def test_units_and_spellings():
    assert RateSchedule.parse("early@5epoch") == RateSchedule("early", 5, "epoch")
    assert RateSchedule.parse("early@5step").unit == "step"
    assert str(RateSchedule.parse("early@5epoch")) == "early@5"


@pytest.mark.parametrize(
    "text,match",
    [
        ("sometimes@3", "schedule must be one of"),
        ("early", "needs a value"),
        ("early@2.5", "whole number"),
        ("linear@0", "linear schedule value must be"),
        ("curriculum@-1", "cannot parse schedule|must be"),
        ("early@3sec", "cannot parse schedule"),
        ("early@5e", "cannot parse schedule value"),
    ],
)
def test_bad_schedules_raise(text, match):
    with pytest.raises(ConfigError, match=match):
        RateSchedule.parse(text)


def test_depth_rule_is_huang_et_al():
    assert depth_rates(0.2, 4) == pytest.approx((0.05, 0.1, 0.15, 0.2))
    assert depth_rates(0.5, 1) == (0.5,)
    assert parse_schedule_setting("depth+late@3") == (True, RateSchedule("late", 3))
    with pytest.raises(ConfigError, match="two time schedules"):
        parse_schedule_setting("early@2+late@3")
    with pytest.raises(ConfigError, match="depth twice"):
        parse_schedule_setting("depth+depth")


def test_grammar_puts_the_schedule_in_the_setting():
    d = parse_dropout("input=0.2:late@2,hidden=0.1:gaussian:early@5")
    assert d["input"].schedule == "late@2" and d["input"].layer is None
    assert d["hidden"].schedule == "early@5" and d["hidden"].layer == "gaussian"
    assert parse_dropout("hidden=0.1:early@5:gaussian") == parse_dropout("hidden=0.1:gaussian:early@5")
    assert parse_dropout("hidden=0.1:constant")["hidden"].schedule is None
    spec = ModelSpec(hidden=(8, 8, 8, 8), dropout=parse_dropout("hidden=0.2:depth:cosine@3"))
    assert spec.dropout["hidden"].p == pytest.approx((0.05, 0.1, 0.15, 0.2))
    assert spec.dropout["hidden"].schedule == "cosine@3"
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    t = ModelSpec(kind="transformer", hidden=(16,), layers=3, dropout=parse_dropout("hidden=0.3:droppath:depth"))
    assert t.dropout["hidden"].p == pytest.approx((0.1, 0.2, 0.3))


@pytest.mark.parametrize(
    "text,match",
    [
        ("input=0.2:depth", "applies at place 'hidden'"),
        ("hidden=0.3/0.2:depth", "derives per-layer rates from one rate"),
        ("hidden=0.3:concrete:early@2", "learns its rate; it takes no schedule"),
        ("hidden=0.3:early@2:late@2", "two time schedules"),
    ],
)
def test_bad_settings_raise(text, match):
    with pytest.raises(ConfigError, match=match):
        ModelSpec(hidden=(8, 8), dropout=parse_dropout(text))
