"""Dropout-family layers as ``nn.Module`` s; each delegates to :mod:`droplab.functional`.

    import droplab.nn as dn
    layer = dn.Dropout(0.5)                 # inverted by default
    layer = dn.Dropout(0.5, mode="classic") # the 2014 paper's form
"""

from droplab.nn._base import StochasticLayer

# --- unit and recurrent dropout (nn/dropout.py, nn/recurrent.py) ---
from droplab.nn.dropout import AlphaDropout, Dropout, DropPath, GaussianDropout, SpatialDropout
from droplab.nn.recurrent import EmbeddingDropout, LockedDropout, WeightDrop
# --- structured, weight and learned-rate dropout (nn/structured.py, nn/weights.py, nn/concrete.py) ---
from droplab.nn.concrete import ConcreteDropout
from droplab.nn.structured import DropBlock1d, DropBlock2d, DropBlock3d
from droplab.nn.weights import DropConnect
from droplab.nn.residual import ResidualDropPath
from droplab.nn.layerdrop import LayerDrop

__all__ = [
    "StochasticLayer",
    "Dropout",
    "SpatialDropout",
    "GaussianDropout",
    "AlphaDropout",
    "DropPath",
    "ResidualDropPath",
    "LayerDrop",
    "LockedDropout",
    "EmbeddingDropout",
    "WeightDrop",
    "DropBlock1d",
    "DropBlock2d",
    "DropBlock3d",
    "DropConnect",
    "ConcreteDropout",
]
# --- peer features: torch's FeatureAlphaDropout, Keras' GaussianNoise (nn/dropout.py) ---
from droplab.nn.dropout import FeatureAlphaDropout, GaussianNoise  # noqa: E402

__all__ += ["FeatureAlphaDropout", "GaussianNoise"]
# --- implicit ensembles (nn/ensembles.py): Masksembles, BatchEnsemble ---
from droplab.nn.ensembles import BatchEnsembleConv2d, BatchEnsembleLinear, Masksembles  # noqa: E402

__all__ += ["Masksembles", "BatchEnsembleLinear", "BatchEnsembleConv2d"]
# --- a user's own model: torch's dropout -> droplab's, and dropout sites (nn/convert.py, nn/sites.py) ---
from droplab.nn.convert import convert  # noqa: E402
from droplab.nn.sites import dropout_sites, insert_dropout  # noqa: E402

__all__ += ["convert", "dropout_sites", "insert_dropout"]
# --- rates as data: per-member dropout rates for population sweeps (nn/member_rates.py) ---
from droplab.nn.member_rates import rates_as_buffers, structure_repr  # noqa: E402

__all__ += ["rates_as_buffers", "structure_repr"]
