"""The domain examples (examples/*.py) run end to end in their ``--quick`` mode.

Each example is loaded from its file and its ``main(argv)`` called in this process (no new
interpreter per example: importing torch again would cost more than the run). A quick run
trains tiny models for one or a few epochs on two seeds; its numbers mean nothing, so the tests
check what the example promises: it finishes with exit code 0 and its last line is the
``comparison:`` line naming the no-dropout baseline and every dropout configuration, with the
numbers the table above it shows.
"""

from __future__ import annotations

import importlib.util
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"droplab_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _comparison(out: str) -> str:
    lines = [line for line in out.splitlines() if line.strip()]
    return next(line for line in reversed(lines) if line.startswith("comparison:"))


def _run(capsys, name: str, *argv: str) -> str:
    code = _load(name).main(["--quick", *argv])
    out = capsys.readouterr().out
    assert code == 0, out
    return out


def _check_line(out: str, configs: list[str], seeds: int = 2) -> str:
    line = _comparison(out)
    # the comparison line closes the output (only the total time or the plot path may follow)
    tail = out.strip().splitlines()[-1]
    assert tail == line or tail.startswith(("total ", "forecast plot:")), tail
    assert f"{seeds} seeds" in line
    assert "paired vs no dropout" in line
    for name in configs:
        assert name in line, (name, line)
    # every configuration has a finite mean and a 95% interval lo <= mean <= hi
    for name in configs:
        m = re.search(re.escape(name) + r" (-?[\d.]+) \[(-?[\d.]+), (-?[\d.]+)\]", line)
        assert m, (name, line)
        mean, lo, hi = map(float, m.groups())
        assert math.isfinite(mean) and lo <= mean <= hi
    return line


def test_forecast_sunspots_quick(capsys, tmp_path):
    pytest.importorskip("statsmodels", reason="forecast example needs the 'domains' extra (statsmodels)")
    out = _run(capsys, "forecast_sunspots", "--out", str(tmp_path), "--export-npz",
               str(tmp_path / "w.npz"))
    _check_line(out, ["no dropout", "per-step 0.3", "locked 0.3"])
    png = tmp_path / "forecast_sunspots.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import numpy as np

    with np.load(tmp_path / "w.npz") as f:
        assert f["x"].shape[1:] == (20, 1) and f["x_test"].shape[1:] == (20, 1)
        assert len(f["x"]) == len(f["y"]) and len(f["x_test"]) == len(f["y_test"])


def test_char_lm_quick_on_a_user_text(capsys, tmp_path):
    text = tmp_path / "t.txt"
    # a text with structure to learn, long enough for the quick split (6000 characters used)
    text.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(200)))
    out = _run(capsys, "char_lm", "--text", str(text))
    assert f"text: {text}" in out
    line = _check_line(out, ["no dropout", "AWD dropout"])
    assert "validation perplexity" in line


def test_char_lm_rejects_a_missing_text(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        _load("char_lm").main(["--quick", "--text", str(tmp_path / "missing.txt")])
    assert exc.value.code == 2
    assert re.search(r"cannot read --text .*missing\.txt", capsys.readouterr().err)


def test_char_lm_rejects_bad_rates(capsys):
    with pytest.raises(SystemExit):
        _load("char_lm").main(["--quick", "--dropout", "0.1,0.2"])
    assert "five comma-separated rates" in capsys.readouterr().err


def test_text_transformer_quick(capsys):
    out = _run(capsys, "text_transformer", "--dropout", "attention=0.2")
    assert "with dropout: attention=0.2" in out
    _check_line(out, ["no dropout", "with dropout"])


def test_text_transformer_rejects_a_bad_placement(capsys):
    with pytest.raises(SystemExit):
        _load("text_transformer").main(["--quick", "--dropout", "recurrent=0.2"])
    assert "--dropout: dropout place 'recurrent' does not exist" in capsys.readouterr().err


def test_fashion_cnn_quick(capsys):
    from droplab.data.fashion import find_fashion_mnist
    from droplab.data.sources import default_cache_dir

    if find_fashion_mnist(None, default_cache_dir()) is None:
        pytest.skip("Fashion-MNIST idx files are not installed (Debian package dataset-fashion-mnist)")
    out = _run(capsys, "fashion_cnn")
    _check_line(out, ["no dropout", "dropout 0.1", "spatial 0.1", "dropblock 0.1"])


def test_cartpole_dqn_quick(capsys):
    pytest.importorskip("gymnasium", reason="RL example needs the 'domains' extra (gymnasium)")
    out = _run(capsys, "cartpole_dqn")
    line = _check_line(out, ["no dropout", "dropout 0.1"])
    # CartPole returns lie in [1, 500]
    for value in re.findall(r"(?:no dropout|dropout 0\.1) ([\d.]+) \[", line):
        assert 1.0 <= float(value) <= 500.0


def test_report_verdicts():
    common = _load("_common")
    base = {0: 0.50, 1: 0.60, 2: 0.55}
    results = {
        "no dropout": base,
        "up": {s: v + 0.1 for s, v in base.items()},         # every seed better by 0.1
        "down": {s: v - 0.1 for s, v in base.items()},       # every seed worse by 0.1
        "mixed": {0: 0.60, 1: 0.50, 2: 0.55},                # differences +0.1, -0.1, 0
    }
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        est = common.report("t", "acc", results, baseline="no dropout", higher_is_better=True)
    line = _comparison(buf.getvalue())
    assert "up +0.100 [0.100, 0.100] (better)" in line
    assert "down -0.100 [-0.100, -0.100] (worse)" in line
    assert re.search(r"mixed [+-]0\.000 \[-0\.\d+, 0\.\d+\] \(no clear difference\)", line)
    assert est["up"].mean == pytest.approx(0.65) and est["no dropout"].n == 3
    # for a loss, lower is better: the same differences flip their verdicts
    with contextlib.redirect_stdout(io.StringIO()) as buf2:
        common.report("t", "loss", results, baseline="no dropout", higher_is_better=False)
    line = _comparison(buf2.getvalue())
    assert "up +0.100 [0.100, 0.100] (worse)" in line and "(lower is better, 3 seeds)" in line


def test_an_example_runs_as_a_script():
    """The README runs the examples as scripts from the repository root."""
    proc = subprocess.run(
        [sys.executable, "examples/char_lm.py", "--help"], cwd=ROOT, capture_output=True,
        text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--text FILE" in proc.stdout and "--quick" in proc.stdout


def test_uncertainty_fashion_quick(capsys):
    from droplab.data.fashion import find_fashion_mnist
    from droplab.data.sources import default_cache_dir

    if find_fashion_mnist(None, default_cache_dir()) is None:
        pytest.skip("Fashion-MNIST idx files are not installed (Debian package dataset-fashion-mnist)")
    out = _run(capsys, "uncertainty_fashion")
    line = _comparison(out)
    for name in ("MC dropout", "deep ensemble", "Masksembles", "BatchEnsemble"):
        assert name in line
    for claim in ("claim 1a", "claim 1b", "claim 2", "claim 3"):
        verdicts = [ln for ln in out.splitlines() if ln.startswith(claim)]
        assert len(verdicts) == 1 and verdicts[0].endswith(("-> holds", "-> does not hold", "-> no clear difference"))
    for value in re.findall(r"AUROC ([\d.]+)", line):
        assert 0.0 <= float(value) <= 1.0
