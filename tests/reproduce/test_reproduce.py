"""droplab reproduce: structure of the findings, the skip path, JSON, the CLI and the HTML page.

Findings run in the ``smoke`` size (tiny data, one or two epochs): these tests check structure
and bookkeeping, not the published shapes (the quick and full sizes measure those).
"""

import dataclasses
import json
import math

import pytest

from droplab.cli import main
from droplab.errors import ConfigError
from droplab.reproduce import FINDINGS, Context, Finding, Report, parse_only, render_page, reproduce
from droplab.reproduce._train import Skip, load

FIELDS = {"number", "name", "citation", "published", "criterion", "measured", "agrees", "seeds",
          "seconds", "skipped", "setting", "notes", "status"}


@pytest.fixture(scope="module")
def smoke_report():
    """Findings 6 and 10 in the smoke size, two seeds (a few seconds)."""
    return reproduce([6, 10], size="smoke", seeds=2, progress=False)


def _no_fashion(monkeypatch, tmp_path):
    """Make Fashion-MNIST look uninstalled: no system folder, no $DROPLAB_DATA, a cache without it.

    The MNIST-1D files of the real cache are linked into the new one, so that MNIST-1D loads
    as fast as usual (it is generated offline when they are absent).
    """
    import droplab.data.fashion as fashion
    from droplab.data.sources import default_cache_dir

    cache = tmp_path / "cache"
    cache.mkdir()
    real = default_cache_dir()
    for f in real.glob("mnist1d*") if real.is_dir() else []:
        (cache / f.name).symlink_to(f)
    monkeypatch.setattr(fashion, "SYSTEM_FASHION_MNIST_DIR", tmp_path / "nowhere")
    monkeypatch.delenv("DROPLAB_DATA", raising=False)
    monkeypatch.setenv("DROPLAB_CACHE", str(cache))


# --- the registry -----------------------------------------------------------------------------
def test_registry_declares_sixteen_findings_with_criteria_and_citations():
    assert sorted(FINDINGS) == list(range(1, 17))
    for n, spec in FINDINGS.items():
        assert spec.number == n
        assert spec.criterion.strip() and spec.citation.strip() and spec.published["text"].strip()
        assert spec.cost > 0
        for value in spec.published.get("numbers", {}).values():
            assert isinstance(value, (int, float))
    # the secondary-source marks of ANCHORS.md are kept
    assert "(S)" in FINDINGS[1].published["text"] and "(S)" in FINDINGS[6].published["text"]
    assert FINDINGS[6].published["numbers"]["Gaussian (%)"] == 0.95


def test_parse_only():
    assert parse_only("1,3,5") == [1, 3, 5]
    assert parse_only(" 5, 1,5 ") == [1, 5]
    assert parse_only("2-4") == [2, 3, 4]
    assert parse_only(None) == list(range(1, 17))
    with pytest.raises(ConfigError, match=r"finding numbers 1-16 .*got '17'"):
        parse_only("1,17")
    with pytest.raises(ConfigError, match=r"got 'x'"):
        parse_only("x")


def test_context_and_reproduce_validate_arguments():
    with pytest.raises(ConfigError, match="size must be one of"):
        Context(size="huge")
    assert Context(size="full").seeds == [0, 1, 2, 3, 4]
    with pytest.raises(ConfigError, match="finding numbers are 1-16, got 0"):
        reproduce([0], size="smoke", progress=False)
    with pytest.raises(ConfigError, match="seeds must be"):
        reproduce([10], size="smoke", seeds=0, progress=False)
    with pytest.raises(ConfigError, match="seeds must be non-negative integers"):
        reproduce([10], size="smoke", seeds=[0, -1], progress=False)


# --- findings -----------------------------------------------------------------------------------
def test_findings_have_every_field_and_valid_json(smoke_report):
    assert [f.number for f in smoke_report.findings] == [6, 10]
    for f in smoke_report.findings:
        assert isinstance(f, Finding)
        assert type(f.agrees) is bool
        assert f.skipped is None and f.status in ("agrees", "disagrees")
        assert f.seeds == [0, 1] and f.seconds > 0
        d = f.to_dict()
        assert FIELDS <= set(d)
        assert d["criterion"] == FINDINGS[f.number].criterion  # declared before the run
        json.dumps(d, allow_nan=False)
        for est in f.measured["values"].values():
            assert set(est) >= {"mean", "lo", "hi", "n", "per_seed"}
            assert est["n"] == len(est["per_seed"]) == 2
            if math.isfinite(est["mean"]):
                assert est["mean"] == pytest.approx(sum(est["per_seed"].values()) / 2)
    lines = smoke_report.json_lines()
    assert [json.loads(x)["number"] for x in lines] == [6, 10]


def test_agrees_is_the_criterion_applied_to_the_measurements(smoke_report):
    six, ten = smoke_report.findings
    v = six.measured["values"]
    assert six.agrees == (v["Gaussian - Bernoulli"]["mean"] <= 0)
    # the paired difference is the per-seed difference of the two arms
    for s, d in v["Gaussian - Bernoulli"]["per_seed"].items():
        assert d == pytest.approx(v["Gaussian"]["per_seed"][s] - v["Bernoulli"]["per_seed"][s])
    v = ten.measured["values"]
    labels = ("patience 10", "GL5", "PQ3", "UP4")
    stop = {lab: v[f"{lab} stop epoch"]["mean"] for lab in labels}
    err = {lab: v[f"{lab} test error"]["mean"] for lab in labels}
    latest, earliest = max(labels, key=stop.get), min(labels, key=stop.get)
    assert ten.agrees == (err[latest] <= err[earliest])
    assert all(1 <= s <= 6 for s in stop.values())  # the smoke budget is 6 epochs


def test_same_seeds_give_identical_measurements(smoke_report):
    again = reproduce([6], size="smoke", seeds=2, progress=False).findings[0]
    assert again.measured["values"] == smoke_report.findings[0].measured["values"]


def test_missing_fashion_mnist_is_skipped_with_install_hint(monkeypatch, tmp_path):
    _no_fashion(monkeypatch, tmp_path)
    ctx = Context(size="smoke", seeds=[0, 1])
    with pytest.raises(Skip, match=r"apt-get install dataset-fashion-mnist"):
        load(ctx, "fashion_mnist")
    # finding 1 still measures MNIST-1D and says which part was skipped and how to get it
    f = FINDINGS[1].run(ctx)
    assert f.skipped is None
    assert any(k.startswith("MNIST-1D") for k in f.measured["values"])
    assert not any(k.startswith("Fashion") for k in f.measured["values"])
    assert any("Fashion-MNIST skipped" in n and "dataset-fashion-mnist" in n for n in f.notes)


def test_a_finding_without_its_data_is_reported_skipped(monkeypatch, tmp_path):
    _no_fashion(monkeypatch, tmp_path)
    spec = dataclasses.replace(FINDINGS[1], func=lambda ctx: load(ctx, "fashion_mnist"))
    f = spec.run(Context(size="smoke", seeds=[0]))
    assert f.status == "skipped" and f.agrees is False
    assert "Fashion-MNIST is not installed" in f.skipped and "--data-dir" in f.skipped
    assert json.loads(json.dumps(f.to_dict()))["skipped"] == f.skipped
    # an explicit data folder without the files is skipped too, naming the missing file
    ctx = Context(size="smoke", seeds=[0], data_dir=str(tmp_path))
    with pytest.raises(Skip, match=r"train-images-idx3-ubyte.gz"):
        load(ctx, "fashion_mnist")


# --- CLI --------------------------------------------------------------------------------------------
def test_cli_json_output_and_files(tmp_path, capsys):
    out = tmp_path / "rep" / "r.html"
    code = main(["reproduce", "--smoke", "--only", "10", "--seeds", "2", "--json", "--quiet",
                 "-o", str(out)])
    assert code == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert {"name", "published", "measured", "agrees", "seeds"} <= set(obj)
    assert obj["number"] == 10 and isinstance(obj["agrees"], bool) and obj["seeds"] == [0, 1]
    assert out.exists() and out.with_suffix(".json").exists()
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["size"] == "smoke" and saved["findings"][0]["name"] == obj["name"]
    assert 'data-figure="finding-10"' in out.read_text()


def test_cli_table_output_and_errors(tmp_path, capsys):
    code = main(["reproduce", "--smoke", "--only", "10", "--seeds", "2", "--quiet",
                 "-o", str(tmp_path / "t.html")])
    assert code == 0
    text = capsys.readouterr().out
    assert "published" in text and "Prechelt" in text and "criterion:" in text
    assert main(["reproduce", "--smoke", "--only", "17", "--quiet"]) == 2
    assert "finding numbers 1-16" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reproduce", "--smoke", "--quick"])  # mutually exclusive sizes


# --- HTML ---------------------------------------------------------------------------------------------
def test_html_escapes_every_text_field():
    evil = '<script>alert("x")</script> & "q"'
    est = {"mean": 1.5, "lo": math.nan, "hi": math.nan, "sd": math.nan, "n": 1, "per_seed": {0: 1.5}}
    plot = {"panels": [
        {"title": evil, "ylabel": "y", "bars": [{"label": evil, "mean": 1.0, "lo": 0.5, "hi": 1.5}]},
        {"title": "t", "ylabel": "y", "xlabel": "x", "xlog": True, "lines": [
            {"label": evil, "x": [1, 10], "mean": [1.0, 2.0], "lo": [0.5, math.nan], "hi": [1.5, math.nan]}]},
    ]}
    f = Finding(3, evil, evil, {"text": evil, "numbers": {evil: 1.0}}, evil,
                {"text": evil, "values": {evil: est}}, True, [0], 1.0, None, evil, [evil], plot)
    skipped = Finding(4, "s", "c", {"text": "p", "numbers": {}}, "k", {"text": "", "values": {}},
                      False, [0], 0.1, skipped=evil)
    report = Report([f, skipped], "smoke", [0], 1.0, evil, {"torch": evil, "cpus": 2, "torch_threads": 1})
    page = render_page(report)
    assert "<script>" not in page and "alert(\"x\")" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;q&quot;" in page
    assert page.count('data-figure="finding-3"') == 1 and 'data-figure="finding-4"' not in page
    assert 'class="badge agrees"' in page and 'class="badge skipped"' in page
