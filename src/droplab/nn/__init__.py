"""Dropout-family layers as ``nn.Module`` s; each delegates to :mod:`droplab.functional`.

    import droplab.nn as dn
    layer = dn.Dropout(0.5)                 # inverted by default
    layer = dn.Dropout(0.5, mode="classic") # the 2014 paper's form
"""

from droplab.nn._base import StochasticLayer

# --- unit and recurrent dropout (nn/dropout.py, nn/recurrent.py) ---
# --- structured, weight and learned-rate dropout (nn/structured.py, nn/weights.py, nn/concrete.py) ---

__all__ = [
    "StochasticLayer",
]
