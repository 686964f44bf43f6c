"""Pure tensor functions for the dropout family; :mod:`droplab.nn` wraps each in a module."""

# --- unit and recurrent dropout (functional/unit.py, functional/recurrent.py) ---
from droplab.functional.unit import (
    alpha_dropout,
    drop_path,
    dropout,
    gaussian_dropout,
    spatial_dropout,
)
from droplab.functional.recurrent import embedding_dropout, locked_dropout
# --- structured, weight and learned-rate dropout (functional/structured.py, functional/weights.py, functional/concrete.py) ---
from droplab.functional.concrete import concrete_dropout
from droplab.functional.structured import drop_block1d, drop_block2d, drop_block3d
from droplab.functional.weights import drop_connect
from droplab.functional.residual import drop_path_residual

__all__: list[str] = [
    "dropout",
    "spatial_dropout",
    "gaussian_dropout",
    "alpha_dropout",
    "drop_path",
    "drop_path_residual",
    "locked_dropout",
    "embedding_dropout",
    "drop_block1d",
    "drop_block2d",
    "drop_block3d",
    "drop_connect",
    "concrete_dropout",
]
# --- peer features: torch's feature alpha dropout, Keras' Gaussian noise (functional/unit.py) ---
from droplab.functional.unit import feature_alpha_dropout, gaussian_noise  # noqa: E402

__all__ += ["feature_alpha_dropout", "gaussian_noise"]
# --- implicit ensembles (functional/ensembles.py): Masksembles, BatchEnsemble ---
from droplab.functional.ensembles import (  # noqa: E402
    batch_ensemble_conv2d,
    batch_ensemble_linear,
    masksembles,
    masksembles_masks,
)

__all__ += ["masksembles_masks", "masksembles", "batch_ensemble_linear", "batch_ensemble_conv2d"]
# --- the batched keep-and-scale rule of many members at once (functional/unit.py) ---
from droplab.functional.unit import batched_dropout_mask, batched_dropout_params  # noqa: E402

__all__ += ["batched_dropout_params", "batched_dropout_mask"]
