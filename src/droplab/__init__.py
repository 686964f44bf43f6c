"""droplab: a laboratory for dropout and the other regularizers of neural networks.

The top level is deliberately small; the layers live in :mod:`droplab.nn` and
:mod:`droplab.functional`.
"""

from droplab.errors import ConfigError, DataError, DroplabError, DroplabWarning, StoreError

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "DroplabError",
    "ConfigError",
    "DataError",
    "StoreError",
    "DroplabWarning",
]
