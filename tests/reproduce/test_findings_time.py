"""Findings 13-16 (dropout over time and depth): fields, and the verdict is the criterion applied."""

from __future__ import annotations

import json

import pytest

from droplab.reproduce import FINDINGS, reproduce

FIELDS = {"number", "name", "citation", "published", "criterion", "measured", "agrees", "seeds", "seconds"}


def _check(f):
    d = f.to_dict()
    assert FIELDS <= set(d) and d["criterion"] == FINDINGS[f.number].criterion
    assert f.skipped is None and f.seeds == [0, 1]
    json.dumps(d, allow_nan=False)
    for est in f.measured["values"].values():
        assert est["n"] == len(est["per_seed"]) == 2
    return f.measured["values"]


def test_registry_cites_the_papers():
    assert "arXiv:2303.01500" in FINDINGS[13].citation == FINDINGS[14].citation
    assert "arXiv:2106.14448" in FINDINGS[15].citation
    assert "arXiv:1909.11556" in FINDINGS[16].citation
    assert FINDINGS[13].published["numbers"]["ViT-T early dropout (%)"] == 74.3


def test_early_and_late_dropout_findings():
    thirteen, fourteen = reproduce([13, 14], size="smoke", seeds=2, progress=False).findings
    v = _check(thirteen)
    d_loss, d_err = v["early - none training loss"], v["early - none test error"]
    assert thirteen.agrees == (d_loss["mean"] < 0 and not d_err["lo"] > 0)
    for s, d in d_loss["per_seed"].items():
        assert d == pytest.approx(
            v["early final training loss"]["per_seed"][s] - v["none final training loss"]["per_seed"][s]
        )
    # Early dropout at p=0.1 trains differently from none and from standard dropout.
    assert v["early final training loss"]["per_seed"] != v["none final training loss"]["per_seed"]
    assert v["early final training loss"]["per_seed"] != v["standard final training loss"]["per_seed"]
    v = _check(fourteen)
    err = {k: v[f"{k} test error"]["mean"] for k in ("none", "early", "late", "standard")}
    helps = [k for k in ("standard", "late") if v[f"{k} - none"]["mean"] < 0 and v[f"{k} - none"]["hi"] < 0]
    assert fourteen.agrees == (bool(helps) and err["early"] > min(err["standard"], err["late"]))


@pytest.mark.slow
def test_rdrop_and_layerdrop_findings():
    fifteen, sixteen = reproduce([15, 16], size="smoke", seeds=2, progress=False).findings
    v = _check(fifteen)
    assert fifteen.agrees == (v["R-Drop - dropout"]["mean"] < 0)
    assert v["R-Drop / dropout training seconds"]["mean"] > 0
    v = _check(sixteen)
    d = v["LayerDrop pruned - standard pruned"]
    lost = {n: v[f"{n} accuracy lost by pruning"]["mean"] for n in ("LayerDrop", "standard")}
    assert sixteen.agrees == (d["mean"] > 0 and d["lo"] > 0 and lost["LayerDrop"] < lost["standard"])
    for n in ("LayerDrop", "standard"):
        assert 0 <= v[f"{n} pruned test accuracy"]["mean"] <= 100
