"""
Images: dropout, spatial dropout and DropBlock in a CNN on Fashion-MNIST
========================================================================

``examples/fashion_cnn.py`` trains two conv blocks on 3000 Fashion-MNIST images per seed with no
dropout, plain dropout, spatial dropout (Tompson et al. 2015) and DropBlock (Ghiasi et al. 2018,
arXiv:1810.12890) after each block. Full size (8 epochs, 3 seeds, full test set, about 3
minutes)::

    python examples/fashion_cnn.py

Here: 1000 training images, 2000 test images, 3 epochs, 2 seeds, no dropout against
DropBlock. The images come from the Debian package ``dataset-fashion-mnist``; without it this
page says so and trains nothing.
"""

# %%
from _examples import examples_dir

examples_dir()
from _common import report  # noqa: E402

from droplab.data import load_dataset  # noqa: E402
from droplab.data.fashion import find_fashion_mnist  # noqa: E402
from droplab.models import ModelSpec, build_model, parse_dropout  # noqa: E402
from droplab.train import TrainConfig, Trainer  # noqa: E402

if find_fashion_mnist() is None:
    print("Fashion-MNIST is not installed here (Debian: apt-get install dataset-fashion-mnist)")
else:
    configs = {"no dropout": "", "dropblock 0.1": "hidden=0.1:dropblock:block_size=3"}
    acc = {name: {} for name in configs}
    for seed in range(2):
        splits = load_dataset("fashion_mnist", subsample=1000, seed=seed)
        test = (splits.x_test[:2000], splits.y_test[:2000])
        for name, dropout in configs.items():
            spec = ModelSpec(kind="cnn2d", hidden=(16, 32), kernel_size=3, pool=2,
                             dropout=parse_dropout(dropout))
            model = build_model(spec, splits.input_shape, splits.n_outputs, seed=seed)
            fit = Trainer(model, TrainConfig(lr=2e-3, epochs=3, batch_size=64, seed=seed,
                                             eval_train=False, device="cpu")).fit(
                (splits.x_train, splits.y_train), test=test)
            acc[name][seed] = fit.test["acc"]
    report("CNN(16, 32) on 1000 Fashion-MNIST images, 3 epochs", "test accuracy", acc,
           baseline="no dropout", higher_is_better=True)
