"""
Text: attention dropout in a small Transformer classifier
=========================================================

``examples/text_transformer.py`` classifies 32-token passages by the Python help topic they come
from, with droplab's Transformer without dropout and with attention, residual, input and
word-type dropout. Full size (d=64, 2 blocks, 15 epochs, 3 seeds, about 3 minutes)::

    python examples/text_transformer.py

Here the example's own data pipeline and builder at a smaller size: the first 6000 tokens of
each topic, d=32, one block, 4 epochs, 2 seeds.
"""

# %%
from _examples import examples_dir

examples_dir()
import text_transformer  # noqa: E402
from _common import report  # noqa: E402

from droplab.models import ModelSpec, build_model, parse_dropout  # noqa: E402
from droplab.train import TrainConfig, Trainer  # noqa: E402

length, d_model = 32, 32
data, vocab, names = text_transformer.load_topics(length, 6000)
print(f"{len(names)} topics, {vocab} token ids; " + ", ".join(f"{s} {len(data[s][0])}" for s in data))
acc, loss = {}, {}
for name, dropout in (("no dropout", ""), ("with dropout", "attention=0.2,hidden=0.2,input=0.2,embedding=0.2")):
    spec = ModelSpec(kind="transformer", hidden=(d_model,), heads=4, layers=1, ff_dim=2 * d_model,
                     vocab_size=vocab, dropout=parse_dropout(dropout))
    acc[name], loss[name] = {}, {}
    for seed in range(2):
        model = build_model(spec, (length,), len(names), seed=seed)
        fit = Trainer(model, TrainConfig(lr=2e-3, epochs=4, batch_size=64, seed=seed, eval_train=False,
                                         device="cpu")).fit(data["train"], val=data["val"], test=data["test"])
        acc[name][seed], loss[name][seed] = fit.test["acc"], fit.test["loss"]
report("Transformer(d=32, 1 block), 4 epochs", "test cross-entropy", loss, baseline="no dropout",
       higher_is_better=False, comparison_line=False)
report("Transformer(d=32, 1 block), 4 epochs", "test accuracy", acc, baseline="no dropout",
       higher_is_better=True)
