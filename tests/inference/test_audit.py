"""The stochasticity audit: what it lists, what it flags, what it leaves as it was."""

import json
import types
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import droplab
import droplab.functional as dfun
import droplab.nn as dn
from droplab.errors import ConfigError
from droplab.inference import INPUT_RATE_LIMIT, WARNING_CODES, AuditReport, audit
from droplab.models import ModelSpec, build_model


class _Unguarded(nn.Module):
    """The seed article's bug: F.dropout(x, 0.5) without training= is active in eval mode."""

    def __init__(self, guarded=False):
        super().__init__()
        self.fc, self.head, self.guarded = nn.Linear(8, 16), nn.Linear(16, 3), guarded

    def forward(self, x):
        h = torch.relu(self.fc(x))
        h = F.dropout(h, 0.5, self.training) if self.guarded else F.dropout(h, 0.5)
        return self.head(h)


def test_unguarded_functional_dropout_is_flagged_active_in_eval():
    report = audit(_Unguarded(), torch.randn(4, 8))
    assert [w.code for w in report.warnings] == ["active_in_eval"]
    w = report.warnings[0]
    assert w.where == "<root>" and "F.dropout" in w.message and "training=self.training" in w.message
    (entry,) = report.entries
    assert (entry.op, entry.source, entry.p, entry.training, entry.active) == (
        "F.dropout", "functional", 0.5, True, True,
    )
    assert entry.input_shape == (4, 16)
    # The same call with training=self.training is listed, off, and not flagged.
    good = audit(_Unguarded(guarded=True), torch.randn(4, 8))
    assert good.warnings == () and len(good.entries) == 1
    assert (good.entries[0].training, good.entries[0].active) == (False, False)


def test_functional_dropout_is_seen_however_it_was_imported():
    from torch.nn.functional import dropout as drop  # bound before the audit runs

    class Net(nn.Module):
        def forward(self, x):
            return drop(x, p=0.3, training=True) + torch.dropout(x, 0.2, False)

    report = audit(Net(), torch.randn(2, 5))
    assert [(e.op, e.p, e.active) for e in report.entries] == [
        ("F.dropout", 0.3, True), ("torch.dropout", 0.2, False),
    ]
    assert "active_in_eval" in report.codes


def test_droplab_model_entries_in_call_order_and_no_warnings_at_recommended_rates():
    spec = ModelSpec(hidden=(16, 16), batch_norm=True, dropout={"input": 0.2, "hidden": 0.5})
    model = build_model(spec, (10,), 3, seed=0)
    report = audit(model)  # the example input comes from model.input_shape
    assert [(e.where, e.op, e.p, e.mode, e.training, e.active) for e in report.entries] == [
        ("input_dropout", "droplab.nn.Dropout", 0.2, "inverted", False, False),
        ("blocks.0.dropout", "droplab.nn.Dropout", 0.5, "inverted", False, False),
        ("blocks.1.dropout", "droplab.nn.Dropout", 0.5, "inverted", False, False),
    ]
    assert report.warnings == ()
    assert [e.index for e in report.entries] == [0, 1, 2]


@pytest.mark.parametrize(("p", "flagged"), [(INPUT_RATE_LIMIT, False), (0.25, True), (0.5, True)])
def test_high_input_rate_threshold(p, flagged):
    model = build_model(ModelSpec(hidden=(8,), dropout={"input": p}), (6,), 2, seed=0)
    report = audit(model)
    assert ("high_input_rate" in report.codes) is flagged
    if flagged:
        assert report.warnings[0].where == "input_dropout"


def test_hidden_dropout_is_not_input_dropout_even_at_high_rate():
    model = build_model(ModelSpec(hidden=(8,), dropout={"hidden": 0.6}), (6,), 2, seed=0)
    assert audit(model).codes == set()


@pytest.mark.parametrize(("p", "flagged"), [(0.79, False), (0.8, True), (0.95, True)])
def test_rate_ge_0_8(p, flagged):
    model = nn.Sequential(nn.Linear(4, 8), dn.Dropout(p), nn.Linear(8, 2))
    report = audit(model, torch.randn(3, 4))
    assert report.codes == ({"rate_ge_0_8"} if flagged else set())


def test_spatial_dropout_of_the_wrong_rank():
    conv = nn.Conv1d(2, 4, 3)
    wrong = nn.Sequential(conv, nn.Dropout2d(0.2), nn.Flatten(), nn.Linear(4 * 6, 2))
    right = nn.Sequential(conv, nn.Dropout1d(0.2), nn.Flatten(), nn.Linear(4 * 6, 2))
    x = torch.randn(3, 2, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own warning about the 3D input
        report = audit(wrong, x)
    assert report.codes == {"spatial_wrong_rank"}
    assert report.warnings[0].where == "1" and "expects a 4D input (N, C, H, W), got 3D" in report.warnings[0].message
    assert audit(right, x).codes == set()

    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.head = nn.Linear(5, 5), nn.Linear(5, 2)

        def forward(self, x):
            return self.head(F.dropout1d(self.fc(x), 0.3, self.training))  # (N, C): wrong

    assert audit(Functional(), torch.randn(3, 5)).codes == {"spatial_wrong_rank"}


def test_dropout_on_the_output():
    after = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.2))
    report = audit(after, torch.randn(2, 4))
    assert report.codes == {"dropout_on_output"} and report.warnings[0].where == "1"
    before = nn.Sequential(nn.Dropout(0.2), nn.Linear(4, 3))
    assert audit(before, torch.randn(2, 4)).codes == set()

    class Reshaped(nn.Module):  # the output is the dropout's output up to a reshape
        def __init__(self):
            super().__init__()
            self.fc, self.drop = nn.Linear(4, 6), dn.Dropout(0.1)

        def forward(self, x):
            return self.drop(self.fc(x)).view(-1, 2, 3)

    assert audit(Reshaped(), torch.randn(2, 4)).codes == {"dropout_on_output"}
    # Weight-level dropout on the last layer is not dropout on the output.
    connect = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), dn.DropConnect(nn.Linear(4, 3), 0.5))
    assert audit(connect, torch.randn(2, 4)).codes == set()


def test_raw_random_draws_and_attention_dropout_in_eval():
    class Noisy(nn.Module):
        def __init__(self, guarded):
            super().__init__()
            self.fc, self.guarded = nn.Linear(4, 4), guarded

        def forward(self, x):
            h = self.fc(x)
            if self.training or not self.guarded:
                h = h + 0.1 * torch.randn_like(h)
            return h

    report = audit(Noisy(False), torch.randn(2, 4))
    assert report.codes == {"active_in_eval"}
    assert (report.entries[0].op, report.entries[0].source) == ("torch.randn_like", "draw")
    assert audit(Noisy(True), torch.randn(2, 4)).entries == ()

    class Attention(nn.Module):
        def forward(self, q):
            return F.scaled_dot_product_attention(q, q, q, dropout_p=0.1)

    report = audit(Attention(), torch.randn(1, 2, 5, 4))
    assert report.codes == {"active_in_eval"} and "dropout_p=0.1" in report.warnings[0].message


def test_droplab_functional_calls_through_the_namespace():
    class Net(nn.Module):
        def __init__(self, training_arg):
            super().__init__()
            self.fc, self.training_arg = nn.Linear(4, 4), training_arg

        def forward(self, x):
            kwargs = {"training": self.training} if self.training_arg else {}
            return droplab.functional.gaussian_dropout(self.fc(x), 0.3, **kwargs) + 0

    report = audit(Net(False), torch.randn(2, 4))
    assert [(e.op, e.p, e.active) for e in report.entries] == [("droplab.functional.gaussian_dropout", 0.3, True)]
    assert report.codes == {"active_in_eval"}  # its inner torch draws are not listed again
    report = audit(Net(True), torch.randn(2, 4))
    assert [(e.op, e.active) for e in report.entries] == [("droplab.functional.gaussian_dropout", False)]


def test_torch_layers_with_internal_dropout_and_batch_norm_without_running_stats():
    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(4, 4, num_layers=2, dropout=0.25, batch_first=True)
            self.att = nn.MultiheadAttention(4, 1, dropout=0.1, batch_first=True)
            self.bn = nn.BatchNorm1d(4, track_running_stats=False)

        def forward(self, x):
            h, _ = self.gru(x)
            h, _ = self.att(h, h, h)
            return self.bn(h[:, -1])

    report = audit(Seq(), torch.randn(3, 5, 4))
    assert [(e.where, e.target, e.p, e.active) for e in report.entries] == [
        ("gru", "internal", 0.25, False), ("att", "internal", 0.1, False),
    ]
    assert report.codes == {"batch_stats_in_eval"}


def test_audit_leaves_modes_rng_hooks_and_namespace_as_they_were():
    model = _Unguarded().train()
    model.head.eval()
    flags = {n: m.training for n, m in model.named_modules()}
    originals = {name: getattr(dfun, name) for name in dfun.__all__}
    x = torch.randn(4, 8)
    rng = torch.get_rng_state()
    audit(model, x)  # the unguarded F.dropout draws from the global RNG
    assert torch.equal(torch.get_rng_state(), rng)
    assert {n: m.training for n, m in model.named_modules()} == flags
    assert all(getattr(dfun, name) is func for name, func in originals.items())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())

    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(0.1)

        def forward(self, x):
            self.drop(x)
            raise RuntimeError("forward failed")

    broken = Broken().train()
    with pytest.raises(RuntimeError, match="forward failed"):
        audit(broken, torch.randn(2, 3))
    assert all(m.training for m in broken.modules())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in broken.modules())
    assert all(getattr(dfun, name) is func for name, func in originals.items())


def test_report_text_and_json():
    report = audit(_Unguarded(), torch.randn(4, 8))
    assert isinstance(report, AuditReport)
    text = str(report)
    assert "F.dropout" in text and "[active_in_eval] <root>:" in text and "1 stochastic operation, 1 warning" in text
    data = json.loads(json.dumps(report.to_dict()))
    assert data["entries"][0]["p"] == 0.5 and data["warnings"][0]["code"] == "active_in_eval"
    assert set(WARNING_CODES) >= {w.code for w in report.warnings}
    assert "(no stochastic operation reached)" in str(audit(nn.Linear(2, 2), torch.randn(1, 2)))


def test_errors():
    with pytest.raises(ConfigError, match="model must be a torch.nn.Module, got str"):
        audit("model", torch.randn(1, 2))
    with pytest.raises(ConfigError, match="audit needs an example_input for a Linear"):
        audit(nn.Linear(2, 2))


def test_cli_audit_of_a_saved_model(tmp_path, capsys):
    """`droplab audit MODEL` on a file written by droplab.train.save_model."""
    from droplab.cli import main
    from droplab.train import RunConfig, RunResult, save_model

    config = RunConfig.from_dict({"model": {"hidden": [8], "dropout": "input=0.5,hidden=0.85"}})
    model = build_model(config.model, (40,), 10, seed=0)
    splits = types.SimpleNamespace(input_shape=(40,), n_outputs=10, task="classification")
    fit = types.SimpleNamespace(summary=lambda: {})
    path = tmp_path / "model.pt"
    save_model(path, RunResult(config=config, splits=splits, model=model, fit=fit))

    assert main(["audit", str(path)]) == 0
    out = capsys.readouterr().out
    assert "[high_input_rate] input_dropout" in out and "[rate_ge_0_8] blocks.0.dropout" in out
    assert main(["audit", str(path), "--strict"]) == 1
    capsys.readouterr()
    assert main(["audit", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {w["code"] for w in data["warnings"]} == {"high_input_rate", "rate_ge_0_8"}
    assert main(["audit", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model file not found" in err
