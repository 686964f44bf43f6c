"""The sweep's decision rule (``stat``): chosen per study, stored, used for every interval and verdict."""

from __future__ import annotations

import pytest
from _toy import toy_tensors

from droplab.errors import ConfigError
from droplab.models import ModelSpec
from droplab.stats import compare, interval
from droplab.sweep import Store, SweepConfig, run_sweep
from droplab.train import TrainConfig

TRAIN = TrainConfig(epochs=2, batch_size=40, lr=1e-2)
SPEC = ModelSpec(hidden=(16,), dropout={"hidden": 0.0})


def _sweep(tmp_path, seeds, stat=None, name="s.db"):
    return run_sweep(SPEC, data=toy_tensors(), space={"dropout.hidden": [0.0, 0.2, 0.5]}, seeds=seeds,
                     train=TRAIN, store=tmp_path / name, progress=False, stat=stat)


def test_default_rule_follows_the_seed_count_and_is_said(tmp_path):
    few = _sweep(tmp_path, 3, name="few.db")
    assert few.stat == "t" and "decision rule: t" in few.stat_text and "t below 7 seeds" in few.stat_text
    many = _sweep(tmp_path, 7, name="many.db")  # 2 comparisons: bootstrap from 7 seeds
    assert many.stat == "bootstrap" and "studentized bootstrap" in many.stat_text
    assert "Holm-corrected across 2 comparisons" in many.stat_text
    base = next(r for r in many.rows if r["params"]["dropout.hidden"] == 0.0)
    values = {r["key"]: {int(s): v for s, v in r["values"].items()} for r in many.rows}
    want = compare(values, base["key"], maximize=True, stat="bootstrap")
    for row in many.rows:
        est = interval(list(row["values"].values()), "bootstrap")
        assert (row["lo"], row["hi"]) == (est.lo, est.hi)
        if row["key"] != base["key"]:
            c = want[row["key"]]
            assert row["diff"]["p_holm"] == c.p_holm and row["diff"]["decided"] == c.decided
            assert (row["diff"]["lo"], row["diff"]["hi"]) == (c.diff.lo, c.diff.hi)
            # 7 seeds, 2 comparisons: the exact sign-flip test's p-value is at least 2 / 2**7
            assert row["diff"]["p"] >= 2 / 128
            assert row["diff"]["seeds_needed"] is None or row["diff"]["seeds_needed"] >= 7
    with Store.open(tmp_path / "many.db", mode="r") as st:
        assert st.summary()["stat"] == "bootstrap"
    assert "decision rule: bootstrap" in str(many.table().caption)


def test_explicit_rule_is_stored_and_kept_on_resume(tmp_path):
    res = _sweep(tmp_path, 5, stat="t")
    assert res.stat == "t" and "the default" not in res.stat_text
    with Store.open(tmp_path / "s.db", mode="r") as st:
        spec = st.study()["spec"]
    assert spec["stat"] == "t"
    cfg = SweepConfig.from_dict({"seeds": 5, "stat": "t", "space": {"dropout.hidden": [0.0, 0.5]},
                                 "train": {"epochs": 1}})
    assert cfg.to_dict()["stat"] == "t" and SweepConfig.from_dict(cfg.to_dict()).stat == "t"


def test_bad_rule_is_rejected():
    with pytest.raises(ConfigError, match="stat must be one of 't', 'bootstrap'; got 'bca'"):
        SweepConfig.from_dict({"stat": "bca"})
    with pytest.raises(ConfigError, match="stat must be one of 't', 'bootstrap'; got 'z'"):
        run_sweep(SPEC, data=toy_tensors(), space={"dropout.hidden": [0.0]}, seeds=1, train=TRAIN,
                  progress=False, stat="z")
