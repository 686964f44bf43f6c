"""A small Transformer text classifier with attention dropout, against the same model without.

Task: which section of Python's documentation does a passage of ``--length`` words come from?
The text is the help topics that ship with every CPython (``pydoc_data.topics``, the language
and library reference): eight large topics that share no text (special method names, compound
statements, built-in types, format strings, string methods, sequence types, the debugger,
mapping types) are the eight classes. Each topic is cut into blocks of ``4 * --length`` tokens
that go to training, validation and test in turn (14 : 3 : 3 of every 20 blocks), so no passage
of the test set overlaps one seen in training; passages are windows of word/punctuation tokens
inside a block. The vocabulary is that
of the training part (words seen twice or more; the rest map to one unknown id).

The model is droplab's Transformer encoder (:func:`droplab.models.build_model`, kind
``transformer``, pre-LN, learned positions, mean readout), trained with
:class:`droplab.train.Trainer`, without dropout
against ``--dropout`` (default, all at 0.2: dropout on the attention weights after the softmax,
on each sublayer's output before the residual add and on the embedded input, as Vaswani et al.
2017, arXiv:1706.03762, plus word-type dropout on the embedding, Gal & Ghahramani 2016,
arXiv:1512.05287; any placement in droplab's ``--dropout`` syntax, e.g. ``attention=0.2`` for
attention dropout alone). The test cross-entropy is shown too: dropout's clearest effect here is
on the confidence of the predictions. Both use
the same seeds: same initial weights, same batch order.

Run::

    python examples/text_transformer.py            # 3 seeds
    python examples/text_transformer.py --quick    # seconds-long smoke run
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Timer, add_common_args, report  # noqa: E402

from droplab.data.pydoc_topics import load_topics as _load_topics  # noqa: E402
from droplab.errors import ConfigError, DataError  # noqa: E402
from droplab.models import ModelSpec, build_model, parse_dropout  # noqa: E402
from droplab.train import TrainConfig, Trainer  # noqa: E402

def load_topics(length: int, max_tokens: int | None) -> tuple[dict, int, list[str]]:
    """``{split: (x, y)}``, the vocabulary size and the class names (droplab.data.pydoc_topics)."""
    try:
        return _load_topics(length, max_tokens)
    except DataError as exc:
        raise SystemExit(f"this example needs the pydoc_data module of the Python standard library ({exc})") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=32, help="tokens per passage (default 32)")
    parser.add_argument("--d-model", type=int, default=64, help="model width (default 64)")
    parser.add_argument("--layers", type=int, default=2, help="encoder blocks (default 2)")
    parser.add_argument("--epochs", type=int, default=15, help="epochs (default 15)")
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default 2e-3)")
    parser.add_argument("--dropout", default="attention=0.2,hidden=0.2,input=0.2,embedding=0.2",
                        help="the dropout configuration, in droplab's --dropout syntax (default "
                        "attention=0.2,hidden=0.2,input=0.2,embedding=0.2; attention dropout "
                        "alone: attention=0.2)")
    add_common_args(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    timer = Timer()
    if args.quick:
        epochs, seeds, length, d_model, layers, max_tokens = 1, 2, 16, 16, 1, 1300
    else:
        epochs, seeds, length, d_model, layers, max_tokens = (
            args.epochs, args.seeds, args.length, args.d_model, args.layers, None)
    data, vocab, names = load_topics(length, max_tokens)
    sizes = ", ".join(f"{s} {len(data[s][0])}" for s in data)
    print(f"{len(names)} pydoc topics as classes, {vocab} token ids, passages of {length} "
          f"tokens: {sizes}")

    specs = {}
    for name, dropout in (("no dropout", ""), ("with dropout", args.dropout)):
        try:
            specs[name] = ModelSpec(kind="transformer", hidden=(d_model,), heads=4, layers=layers,
                                    ff_dim=2 * d_model, vocab_size=vocab,
                                    dropout=parse_dropout(dropout))
        except ConfigError as exc:
            parser.error(f"--dropout: {exc}")
    acc: dict[str, dict[int, float]] = {name: {} for name in specs}
    loss: dict[str, dict[int, float]] = {name: {} for name in specs}
    seconds: dict[str, float] = {name: 0.0 for name in specs}
    for name, spec in specs.items():
        for seed in range(seeds):
            model = build_model(spec, (length,), len(names), seed=seed)
            config = TrainConfig(lr=args.lr, epochs=epochs, batch_size=64, seed=seed,
                                 eval_train=False, device="cpu")
            fit = Trainer(model, config).fit(data["train"], val=data["val"], test=data["test"])
            acc[name][seed] = fit.test["acc"]
            loss[name][seed] = fit.test["loss"]
            seconds[name] += fit.seconds

    title = (f"Transformer(d={d_model}, {layers} blocks) classifying pydoc topics, {epochs} epochs"
             f"\nwith dropout: {args.dropout}")
    report(title, "test cross-entropy", loss, baseline="no dropout", higher_is_better=False,
           comparison_line=False)
    report(
        title,
        "test accuracy",
        acc,
        baseline="no dropout",
        higher_is_better=True,
        seconds=seconds,
    )
    print(f"total {timer.seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
