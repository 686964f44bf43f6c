"""droplab: a laboratory for dropout and the other regularizers of neural networks.

The top level is deliberately small; the layers live in :mod:`droplab.nn` and
:mod:`droplab.functional`.
"""

from droplab.errors import ConfigError, DataError, DroplabError, DroplabWarning, StoreError

__version__ = "0.1.0"

# Inference entry points (droplab.inference), imported on first use so that `import droplab`
# (and building the CLI parser) does not import torch.
_LAZY = {"mc_predict": "droplab.inference", "mc_mode": "droplab.inference", "audit": "droplab.inference"}
_LAZY["ensemble"] = "droplab.sweep.ensemble"  # deep ensembles trained as one population


def __getattr__(name: str):  # PEP 562
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'droplab' has no attribute {name!r}")


__all__ = [
    "__version__",
    "DroplabError",
    "ConfigError",
    "DataError",
    "StoreError",
    "DroplabWarning",
    "mc_predict",
    "mc_mode",
    "audit",
    "ensemble",
]
