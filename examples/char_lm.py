"""A character-level LSTM language model with AWD-LSTM dropout, against the same model without.

The model is built from droplab's recurrent dropout layers, the dropout part of AWD-LSTM
(Merity, Keskar & Socher 2017, "Regularizing and Optimizing LSTM Language Models",
arXiv:1708.02182):

- :class:`droplab.nn.EmbeddingDropout` drops whole characters (every occurrence of a dropped
  character in the batch), Gal & Ghahramani 2016 (arXiv:1512.05287);
- :class:`droplab.nn.LockedDropout` on the embedded input, between LSTM layers and on the last
  layer's output: one mask per sequence, reused at every step;
- :class:`droplab.nn.WeightDrop` on each LSTM's hidden-to-hidden matrix (DropConnect on the
  recurrent weights, one mask per batch, shared over time).

The text (``--text FILE``, any UTF-8 file; default: the help topics that ship with every
CPython, ``pydoc_data.topics``, about 465k characters of the language reference) is cut to its
first ``--max-chars`` characters (default 30000, so that a CPU run takes minutes, not hours),
split into the first 80% for training and the last 20% for validation. Training runs truncated
BPTT over contiguous streams, carrying the hidden state across segments, as AWD-LSTM does.
Validation perplexity is ``exp`` of the mean cross-entropy per character, in eval mode, after
the last epoch (each run also prints its lowest value over the epochs and when it came: the
no-dropout model overfits, so an early-stopped run of it does better than its last epoch). The
no-dropout model is the same network with every rate at 0 and the same seeds (same
initial weights, same batches). The per-step loss needs outputs at every position, which
:class:`droplab.train.Trainer` (one output per example) does not take, so the loop is here.

Run::

    python examples/char_lm.py                      # 3 seeds, default text
    python examples/char_lm.py --text README.md     # any text file
    python examples/char_lm.py --quick              # seconds-long smoke run
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Timer, add_common_args, report  # noqa: E402

from droplab.nn import EmbeddingDropout, LockedDropout, WeightDrop  # noqa: E402


def default_text() -> tuple[str, str]:
    """The pydoc help topics joined in key order: shipped with CPython (the text varies by version)."""
    try:
        from pydoc_data.topics import topics
    except ImportError:  # a trimmed Python without pydoc's data
        raise SystemExit("this Python has no pydoc_data module; name a text with --text FILE") from None
    return "\n\n".join(topics[k] for k in sorted(topics)), "pydoc_data.topics (Python's help topics)"


class CharLM(nn.Module):
    """Embedding -> LSTM layers -> Linear, with AWD-LSTM's dropout layers.

    Args:
        vocab: number of symbols.
        embed: embedding width.
        hidden: LSTM width (every layer).
        layers: LSTM layers.
        p_embed, p_input, p_hidden, p_output, p_weight: rates of embedding dropout, locked
            dropout on the input / between layers / on the output, and weight drop.
        generator: the ``torch.Generator`` every mask is drawn from.

    Shape:
        ids ``(N, T)`` -> logits ``(N, T, vocab)``.
    """

    def __init__(self, vocab: int, embed: int, hidden: int, layers: int, *, p_embed: float,
                 p_input: float, p_hidden: float, p_output: float, p_weight: float,
                 generator: torch.Generator) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.embedding_dropout = EmbeddingDropout(p_embed, generator=generator)
        self.input_dropout = LockedDropout(p_input, batch_first=True, generator=generator)
        self.rnns = nn.ModuleList(
            WeightDrop(nn.LSTM(embed if i == 0 else hidden, hidden, batch_first=True), p_weight,
                       generator=generator)
            for i in range(layers)
        )
        self.hidden_dropout = LockedDropout(p_hidden, batch_first=True, generator=generator)
        self.output_dropout = LockedDropout(p_output, batch_first=True, generator=generator)
        self.decoder = nn.Linear(hidden, vocab)

    def forward(self, ids: torch.Tensor, state: list | None = None) -> tuple[torch.Tensor, list]:
        x = self.input_dropout(self.embedding_dropout(self.embedding(ids), ids))
        new_state = []
        for i, rnn in enumerate(self.rnns):
            x, s = rnn(x, None if state is None else state[i])
            new_state.append(s)
            x = self.hidden_dropout(x) if i < len(self.rnns) - 1 else self.output_dropout(x)
        return self.decoder(x), new_state


def streams(ids: torch.Tensor, batch: int) -> torch.Tensor:
    """Cut a 1-D id sequence into ``batch`` contiguous rows ``(batch, T)`` (the rest dropped)."""
    length = len(ids) // batch
    return ids[: batch * length].view(batch, length)


def detach(state: list) -> list:
    return [tuple(t.detach() for t in s) for s in state]


def run_epoch(model, data, bptt, optimizer=None, clip=1.0) -> float:
    """One pass over ``data`` (B, T) in BPTT segments; returns the mean loss per character."""
    training = optimizer is not None
    model.train(training)
    total, count, state = 0.0, 0, None
    loss_fn = nn.CrossEntropyLoss()
    with torch.set_grad_enabled(training):
        for i in range(0, data.shape[1] - 1, bptt):
            x = data[:, i : i + bptt]
            y = data[:, i + 1 : i + 1 + bptt]
            x = x[:, : y.shape[1]]
            logits, state = model(x, state)
            state = detach(state)
            loss = loss_fn(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            if training:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), clip)
                optimizer.step()
            total += loss.item() * y.numel()
            count += y.numel()
    return total / count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text", metavar="FILE", help="UTF-8 text file (default: Python's pydoc topics)")
    parser.add_argument("--max-chars", type=int, default=30_000,
                        help="use the first this many characters of the text (default 30000, which "
                        "keeps 3 seeds x 2 models under 5 CPU minutes; 0: all)")
    parser.add_argument("--embed", type=int, default=32, help="embedding width (default 32)")
    parser.add_argument("--hidden", type=int, default=256, help="LSTM width (default 256)")
    parser.add_argument("--layers", type=int, default=1, help="LSTM layers (default 1)")
    parser.add_argument("--epochs", type=int, default=25, help="epochs (default 25)")
    parser.add_argument("--bptt", type=int, default=50, help="BPTT segment length (default 50)")
    parser.add_argument("--batch-size", type=int, default=32, help="parallel streams (default 32)")
    parser.add_argument("--lr", type=float, default=5e-3, help="Adam learning rate (default 5e-3)")
    parser.add_argument("--dropout", default="0.1,0.1,0.2,0.2,0.2", metavar="E,I,H,O,W",
                        help="embedding, input, between-layer, output and weight-drop rates "
                        "(default 0.1,0.1,0.2,0.2,0.2)")
    add_common_args(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        rates = [float(r) for r in args.dropout.split(",")]
        if len(rates) != 5:
            raise ValueError
    except ValueError:
        parser.error(f"--dropout must be five comma-separated rates E,I,H,O,W, got {args.dropout!r}")
    timer = Timer()

    if args.text:
        try:
            text, source = Path(args.text).read_text(encoding="utf-8"), args.text
        except (OSError, UnicodeDecodeError) as exc:
            parser.error(f"cannot read --text {args.text}: {exc}")
    else:
        text, source = default_text()
    max_chars = 6_000 if args.quick else args.max_chars
    if max_chars:
        text = text[:max_chars]
    split = int(0.8 * len(text))
    if split < 10 * args.bptt:
        parser.error(f"the text has {len(text)} characters; need at least {math.ceil(10 * args.bptt / 0.8)}")
    train_text, val_text = text[:split], text[split:]
    chars = sorted(set(train_text))
    index = {c: i + 1 for i, c in enumerate(chars)}  # 0: a character never seen in training

    def encode(s: str) -> torch.Tensor:
        return torch.tensor([index.get(c, 0) for c in s], dtype=torch.long)

    train = streams(encode(train_text), args.batch_size)
    val = streams(encode(val_text), 8)
    vocab = len(chars) + 1
    epochs, seeds, hidden = (1, 2, 32) if args.quick else (args.epochs, args.seeds, args.hidden)
    print(f"text: {source}, {len(train_text)} training / {len(val_text)} validation characters, "
          f"{vocab - 1} distinct")

    configs = {"no dropout": [0.0] * 5, "AWD dropout": rates}
    ppl: dict[str, dict[int, float]] = {name: {} for name in configs}
    seconds: dict[str, float] = {name: 0.0 for name in configs}
    for name, (pe, pi, ph, po, pw) in configs.items():
        for seed in range(seeds):
            run = Timer()
            generator = torch.Generator().manual_seed(seed)
            torch.manual_seed(seed)  # initial weights: the same for both configurations
            model = CharLM(vocab, args.embed, hidden, args.layers, p_embed=pe, p_input=pi,
                           p_hidden=ph, p_output=po, p_weight=pw, generator=generator)
            optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
            order = torch.Generator().manual_seed(seed)
            curve = []
            for epoch in range(epochs):
                # start each epoch at a random offset so that the segment boundaries move
                shift = int(torch.randint(args.bptt, (1,), generator=order))
                train_loss = run_epoch(model, train[:, shift:], args.bptt, optimizer)
                curve.append(math.exp(run_epoch(model, val, args.bptt)))
            ppl[name][seed] = curve[-1]
            seconds[name] += run.seconds
            best = min(range(epochs), key=curve.__getitem__)
            print(f"  {name}, seed {seed}: train perplexity {math.exp(train_loss):.2f} (dropout on), "
                  f"val perplexity {curve[-1]:.3f} after epoch {epochs} "
                  f"(lowest {curve[best]:.3f} after epoch {best + 1}), {run.seconds:.0f} s", flush=True)

    report(
        f"char-level LSTM({hidden}x{args.layers}), {epochs} epochs, "
        f"{len(train_text)} training characters",
        f"validation perplexity after epoch {epochs}",
        ppl,
        baseline="no dropout",
        higher_is_better=False,
        seconds=seconds,
    )
    print(f"total {timer.seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
