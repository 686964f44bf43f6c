"""A small offline text-classification task: which pydoc topic does a passage come from?

The text is the help topics that ship with every CPython (``pydoc_data.topics``, the language
and library reference): eight large topics that share no text are the eight classes. Each topic
is cut into blocks of ``4 * length`` tokens that go to training, validation and test in turn
(14 : 3 : 3 of every 20 blocks), so no test passage overlaps one seen in training; passages are
windows of word/punctuation tokens inside a block (stride ``length // 2``). The vocabulary is
that of the training part (tokens seen twice or more; id 0 is the unknown token). Used by
``examples/text_transformer.py`` and the reproduction suite's R-Drop and LayerDrop findings.

Example::

    data, vocab, names = load_topics(32)
    x, y = data["train"]  # (N, 32) token ids, (N,) class ids
"""

from __future__ import annotations

import re
from collections import Counter

import torch

from droplab.errors import DataError

__all__ = ["TOPICS", "tokenize", "windows", "load_topics"]

#: Large pydoc topics with no text in common (checked by 80-character shingles).
TOPICS = ("specialnames", "compound", "types", "formatstrings", "string-methods", "typesseq",
          "debugger", "typesmapping")
_TOKEN = re.compile(r"[a-z]+|[0-9]+|[^\sa-z0-9]")


def tokenize(text: str) -> list[str]:
    """Lower-case words, numbers and single punctuation marks."""
    return _TOKEN.findall(text.lower())


def windows(ids: list[int], length: int, stride: int) -> torch.Tensor:
    """Windows of ``length`` ids every ``stride`` ids, as an ``(n, length)`` long tensor."""
    starts = range(0, len(ids) - length + 1, stride)
    return torch.tensor([ids[s : s + length] for s in starts], dtype=torch.long).view(-1, length)


def load_topics(
    length: int, max_tokens: int | None = None
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], int, list[str]]:
    """``({split: (x, y)}, vocabulary size, class names)`` for passages of ``length`` tokens.

    Args:
        length: tokens per passage.
        max_tokens: use only the first this many tokens of each topic (``None``: all).

    Raises:
        DataError: this Python has no ``pydoc_data`` module.
    """
    try:
        from pydoc_data.topics import topics
    except ImportError:  # a trimmed Python without pydoc's data
        raise DataError("the pydoc topics task needs the pydoc_data module of the Python standard library") from None
    names = [t for t in TOPICS if t in topics]
    block = 4 * length
    parts: dict[str, list[tuple[int, list[str]]]] = {"train": [], "val": [], "test": []}
    for label, name in enumerate(names):
        tokens = tokenize(topics[name])[:max_tokens]
        for i, start in enumerate(range(0, len(tokens), block)):
            split = "train" if i % 20 < 14 else "val" if i % 20 < 17 else "test"
            parts[split].append((label, tokens[start : start + block]))
    counts = Counter(tok for _, chunk in parts["train"] for tok in chunk)
    vocab = {tok: i + 1 for i, tok in enumerate(sorted(t for t, c in counts.items() if c >= 2))}
    data = {}
    for split, chunks in parts.items():
        xs, ys = [], []
        for label, chunk in chunks:
            x = windows([vocab.get(tok, 0) for tok in chunk], length, length // 2)
            xs.append(x)
            ys.append(torch.full((len(x),), label, dtype=torch.long))
        data[split] = (torch.cat(xs), torch.cat(ys))
    return data, len(vocab) + 1, names
