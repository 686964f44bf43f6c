"""Pure tensor functions for the dropout family; :mod:`droplab.nn` wraps each in a module."""

# --- unit and recurrent dropout (functional/dropout.py, functional/recurrent.py) ---
# --- structured, weight and learned-rate dropout (functional/structured.py, functional/weights.py, functional/concrete.py) ---

__all__: list[str] = [
]
