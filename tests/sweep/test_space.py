"""Search spaces: grid, random, Optuna TPE; axis parsing and configuration keys; flag parsing."""

from __future__ import annotations

import builtins

import pytest

from droplab.errors import ConfigError
from droplab.flags import sweep_overrides
from droplab.sweep.config import parse_axis_flag, parse_dropout_flag, parse_values
from droplab.sweep.space import (
    GridSpace,
    IntUniform,
    LogUniform,
    OptunaSpace,
    RandomSpace,
    Uniform,
    config_key,
    make_space,
    parse_axis,
)


def test_grid_is_the_cartesian_product_in_order():
    space = GridSpace({"dropout.hidden": [0.0, 0.5], "train.lr": [1e-3, 1e-2, 1e-1]})
    configs = space.configurations()
    assert len(configs) == 6
    assert configs[0] == {"dropout.hidden": 0.0, "train.lr": 1e-3}
    assert configs[1] == {"dropout.hidden": 0.0, "train.lr": 1e-2}  # last axis fastest
    assert space.ask() == configs and space.ask() == []
    assert space.validation_points() == configs
    assert GridSpace({}).configurations() == [{}]


def test_config_keys_are_canonical_and_distinct():
    assert config_key({"dropout.hidden": 0.1, "train.lr": 0.001}) == "dropout.hidden=0.1,train.lr=0.001"
    assert config_key({"p": 0.0}) != config_key({"p": 0})
    assert config_key({"model.hidden": [64, 64], "act": "relu"}) == "model.hidden=[64,64],act=relu"
    assert config_key({}) == "default"


def test_axis_parsing_and_errors():
    assert parse_axis("a", {"uniform": [0, 0.5]}) == Uniform(0.0, 0.5)
    assert parse_axis("a", {"int": [1, 3]}) == IntUniform(1, 3)
    with pytest.raises(ConfigError, match="axis 'a' has no values"):
        parse_axis("a", [])
    with pytest.raises(ConfigError, match="axis 'a' lists the value 0.1 twice"):
        parse_axis("a", [0.1, 0.1])
    with pytest.raises(ConfigError, match="one key out of uniform, loguniform, int"):
        parse_axis("a", {"normal": [0, 1]})
    with pytest.raises(ConfigError, match=r"axis 'a': loguniform needs 0 < low < high, got \[0.0, 1.0\]"):
        parse_axis("a", {"loguniform": [0, 1]})
    with pytest.raises(ConfigError, match=r"uniform needs low < high, got \[1, 0\]"):
        Uniform(1, 0)
    with pytest.raises(ConfigError, match="a grid needs a list of values"):
        GridSpace({"lr": LogUniform(1e-4, 1e-2)})
    with pytest.raises(ConfigError, match="must be a list of values or a distribution table"):
        parse_axis("a", 0.5)


def test_random_search_is_seeded_in_range_and_covers_bounds_in_validation():
    axes = {"p": Uniform(0.0, 0.6), "lr": LogUniform(1e-4, 1e-1), "width": [32, 64], "depth": IntUniform(1, 3)}
    a = RandomSpace(axes, n=40, seed=1).configurations()
    b = RandomSpace(axes, n=40, seed=1).configurations()
    c = RandomSpace(axes, n=40, seed=2).configurations()
    assert a == b and a != c
    assert len(a) == 40
    for cfg in a:
        assert 0.0 <= cfg["p"] <= 0.6 and 1e-4 <= cfg["lr"] <= 1e-1
        assert cfg["width"] in (32, 64) and cfg["depth"] in (1, 2, 3)
        assert cfg["p"] == float(f"{cfg['p']:.4g}")  # rounded to 4 significant digits
    # Log-uniform: about half of the draws below the geometric midpoint 10**-2.5 (binomial 40, 1/2).
    below = sum(cfg["lr"] < 10**-2.5 for cfg in a)
    assert 8 <= below <= 32
    points = RandomSpace(axes, n=3).validation_points()
    assert {pt["p"] for pt in points} >= {0.0, 0.6}
    # A tiny discrete space: duplicates are drawn once.
    assert len(RandomSpace({"w": [1, 2]}, n=30).configurations()) == 2


def test_make_space_checks_sampler_and_trials():
    assert make_space({"p": [0.1]}).kind == "grid"
    with pytest.raises(ConfigError, match="sampler must be one of 'grid', 'random', 'tpe'; got 'bayes'"):
        make_space({"p": [0.1]}, "bayes")
    with pytest.raises(ConfigError, match="needs trials"):
        make_space({"p": [0.1]}, "random")
    with pytest.raises(ConfigError, match="trials applies to sampler 'random' or 'tpe'"):
        make_space({"p": [0.1]}, "grid", trials=3)


def test_tpe_without_optuna_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_optuna(name, *args, **kwargs):
        if name == "optuna" or name.startswith("optuna."):
            raise ImportError("No module named 'optuna'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_optuna)
    space = OptunaSpace({"p": Uniform(0.0, 0.5)}, n=4)
    with pytest.raises(ConfigError, match="pip install optuna"):
        space.check_available()


def test_tpe_asks_in_batches_and_replays_deterministically():
    pytest.importorskip("optuna")
    axes = {"p": Uniform(0.0, 0.6), "w": [8, 16]}

    def drive(space):
        asked = []
        while batch := space.ask():
            asked.append(batch)
            for cfg in batch:
                space.tell(cfg, 1.0 - abs(cfg["p"] - 0.3))
        return asked

    a = drive(OptunaSpace(axes, n=10, seed=3, batch=4))
    b = drive(OptunaSpace(axes, n=10, seed=3, batch=4))
    assert a == b
    assert all(len(x) <= 4 for x in a) and sum(len(x) for x in a) <= 10
    for batch in a:
        for cfg in batch:
            assert 0.0 <= cfg["p"] <= 0.6 and cfg["w"] in (8, 16)


def test_flag_parsing():
    assert parse_values("0,0.1,0.2") == [0, 0.1, 0.2]
    assert parse_values("[256,256];[512]") == [[256, 256], [512]]
    assert parse_axis_flag("train.lr=1e-3,1e-2") == ("train.lr", [0.001, 0.01])
    assert parse_dropout_flag("hidden=0.5/0.3,0.2/0.1:classic") == ("hidden", [[0.5, 0.3], [0.2, 0.1]], "classic")
    over = sweep_overrides(
        {"dropout": ["hidden=0,0.5:gaussian"], "lr": "0.01", "l2": "0,1e-4", "epochs": 2}, ["model.hidden=[8];[16]"],
    )
    assert over["space"] == {"dropout.hidden": [0, 0.5], "model.hidden": [[8], [16]], "train.l2": [0, 1e-4]}
    assert over["train"] == {"epochs": 2, "lr": 0.01}
    assert over["model"]["dropout"]["hidden"]["layer"] == "gaussian"
    with pytest.raises(ConfigError, match="cannot parse --dropout 'hidden'"):
        parse_dropout_flag("hidden")
    with pytest.raises(ConfigError, match="dropout place must be one of"):
        parse_dropout_flag("hiden=0.1")
    with pytest.raises(ConfigError, match="cannot parse rate 'x'"):
        parse_dropout_flag("hidden=0.1,x")
    with pytest.raises(ConfigError, match="expected NAME=v1,v2"):
        parse_axis_flag("train.lr")
