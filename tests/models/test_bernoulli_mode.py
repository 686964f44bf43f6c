"""DropoutSpec.bernoulli_mode: the one place a layer name becomes a dropout mode."""

from __future__ import annotations

import droplab.nn as dn
from droplab.models import DropoutSpec, ModelSpec, build_model


def test_bernoulli_layers_and_their_modes():
    assert DropoutSpec(0.2, "dropout").bernoulli_mode == "inverted"
    assert DropoutSpec(0.2, "classic").bernoulli_mode == "classic"
    assert DropoutSpec(0.2, "gaussian").bernoulli_mode is None
    assert DropoutSpec(0.2).bernoulli_mode is None  # unresolved: ModelSpec fills the layer in
    spec = ModelSpec(kind="mlp", hidden=(4,), dropout={"input": 0.1, "hidden": DropoutSpec(0.3, "classic")})
    assert spec.dropout["input"].bernoulli_mode == "inverted"
    model = build_model(spec, (5,), 2)
    modes = [m.mode for m in model.modules() if isinstance(m, dn.Dropout)]
    assert modes == ["inverted", "classic"]
