"""
Text: AWD-LSTM dropout in a character language model
====================================================

``examples/char_lm.py`` trains a character-level LSTM on Python's help topics with the dropout
of AWD-LSTM (Merity et al. 2017, arXiv:1708.02182): EmbeddingDropout, LockedDropout on the
input and output, WeightDrop on the hidden-to-hidden weights. Full size (30k characters, a
256-unit LSTM, 25 epochs, 3 seeds, about 2.5 minutes)::

    python examples/char_lm.py

Here: 8000 characters, 128 units, 5 epochs, 2 seeds (far too short for dropout to pay off:
at full size the model without dropout overfits after 13-16 epochs).
"""

# %%
from _examples import examples_dir

examples_dir()
import char_lm  # noqa: E402

char_lm.main(["--max-chars", "8000", "--hidden", "128", "--epochs", "5", "--seeds", "2"])
