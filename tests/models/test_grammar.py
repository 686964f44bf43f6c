"""The one dropout grammar (droplab.models.grammar) behind [model] dropout, train and sweep --dropout."""

from __future__ import annotations

import pytest

from droplab.errors import ConfigError
from droplab.models import PLACES, DropoutSpec, parse_dropout, parse_dropout_entries
from droplab.sweep.config import parse_dropout_flag


def _entries(text):
    return {p: (e.rates, e.layer, dict(e.options), e.schedules)
            for p, e in parse_dropout_entries(text, places=PLACES).items()}


@pytest.mark.parametrize(
    "text, expected",
    [
        # one place, one rate (README, train)
        ("hidden=0.3", {"hidden": ((0.3,), None, {}, ())}),
        # commas before NAME= separate places
        ("input=0.1,hidden=0.5", {"input": ((0.1,), None, {}, ()), "hidden": ((0.5,), None, {}, ())}),
        ("input=0.5,hidden=0.5", {"input": ((0.5,), None, {}, ()), "hidden": ((0.5,), None, {}, ())}),
        # per-layer rates, a layer, options
        (" hidden=0.5/0.3:gaussian , input=0.1,recurrent=0.25:weight:mode=classic ",
         {"hidden": (((0.5, 0.3),), "gaussian", {}, ()), "input": ((0.1,), None, {}, ()),
          "recurrent": ((0.25,), "weight", {"mode": "classic"}, ())}),
        ("hidden=0.2:dropblock:block_size=5:shared_channels=true",
         {"hidden": ((0.2,), "dropblock", {"block_size": 5, "shared_channels": True}, ())}),
        # schedules anywhere after the rate; two fields combine
        ("input=0.2:late@2,hidden=0.1:gaussian:early@5",
         {"input": ((0.2,), None, {}, ("late@2",)), "hidden": ((0.1,), "gaussian", {}, ("early@5",))}),
        ("hidden=0.2:depth:cosine@3", {"hidden": ((0.2,), None, {}, ("depth+cosine@3",))}),
        # any other comma lists rates (a sweep axis) or schedules (a schedule axis)
        ("hidden=0,0.1,0.2,0.3,0.4,0.5", {"hidden": ((0.0, 0.1, 0.2, 0.3, 0.4, 0.5), None, {}, ())}),
        ("input=0,0.2:gaussian", {"input": ((0.0, 0.2), "gaussian", {}, ())}),
        ("hidden=0.5/0.3,0.2/0.1:classic", {"hidden": (((0.5, 0.3), (0.2, 0.1)), "classic", {}, ())}),
        ("hidden=0.1,0.3:early@5,late@5,constant",
         {"hidden": ((0.1, 0.3), None, {}, ("early@5", "late@5", "constant"))}),
        ("input=0,0.1,0.2,hidden=0,0.25,0.5",
         {"input": ((0.0, 0.1, 0.2), None, {}, ()), "hidden": ((0.0, 0.25, 0.5), None, {}, ())}),
        ("", {}),
    ],
)
def test_every_written_form_parses(text, expected):
    assert _entries(text) == expected


def test_a_model_takes_one_rate_and_one_schedule_per_place():
    assert parse_dropout("input=0.1,hidden=0.5/0.3:gaussian") == {
        "input": DropoutSpec(0.1), "hidden": DropoutSpec((0.5, 0.3), "gaussian")}
    assert parse_dropout("hidden=0.2:depth:cosine@3")["hidden"].schedule == "depth+cosine@3"
    with pytest.raises(ConfigError, match=r"^dropout entry 'hidden=0,0.1' gives 2 rates; a model takes one "
                                          r"\(a list is a sweep axis: droplab sweep --dropout\)$"):
        parse_dropout("input=0.1,hidden=0,0.1")
    with pytest.raises(ConfigError, match="gives 2 schedules; a model takes one"):
        parse_dropout("hidden=0.1:early@5,late@5")


def test_the_sweep_flag_reads_the_same_grammar():
    assert parse_dropout_flag("hidden=0,0.1,0.2:gaussian") == ("hidden", [0.0, 0.1, 0.2], "gaussian")
    assert parse_dropout_flag("hidden=0.5/0.3,0.2/0.1:classic") == ("hidden", [[0.5, 0.3], [0.2, 0.1]], "classic")
    with pytest.raises(ConfigError, match="expected one PLACE=RATES"):
        parse_dropout_flag("input=0.1,hidden=0.2")


@pytest.mark.parametrize(
    "text, message",
    [
        ("hidden", r"^cannot parse dropout entry 'hidden'; expected place=rate\[:layer\]"),
        ("0.3,hidden=0.1", r"^cannot parse dropout entry '0.3'"),
        ("hidden=", r"^cannot parse dropout entry 'hidden='"),
        ("hiden=0.3", r"dropout place must be one of .*got 'hiden' \(did you mean 'hidden'\?\)"),
        ("hidden=0.3,hidden=0.2", r"^dropout place 'hidden' is given twice in 'hidden=0.3,hidden=0.2'$"),
        ("hidden=0.1,x", r"^cannot parse rate 'x' for place 'hidden' in 'hidden=0.1,x'"),
        ("hidden=0.5/y", r"^cannot parse rate 'y' for place 'hidden'"),
        ("hidden=:gaussian", r"^dropout entry 'hidden=:gaussian' lists no rates$"),
        ("hidden=0.3:dropblock:size", r"^cannot parse option 'size' in 'hidden=0.3:dropblock:size'; expected name=value$"),
    ],
)
def test_malformed_strings_raise_one_clear_error(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_dropout_entries(text, places=PLACES)


def test_not_a_string_is_refused():
    with pytest.raises(ConfigError, match="dropout must be a string"):
        parse_dropout_entries(0.3)
