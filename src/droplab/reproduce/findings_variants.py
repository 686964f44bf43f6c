"""Findings 7-9: dropout's variants -- DropConnect, spatial dropout and DropBlock (7),
variational dropout in a GRU (8) and concrete dropout's learned rate (9)."""

from __future__ import annotations

import math

from droplab.models import ModelSpec
from droplab.reproduce._common import (
    DROP,
    HIDDEN,
    bar,
    diff,
    est,
    fmt,
    line,
    load_mnist1d,
    mlp_epochs,
    mlp_spec,
    setting_mlp,
    spearman,
    train_config,
    txt,
)
from droplab.reproduce._train import Arm, as_sequence, load, train_group
from droplab.reproduce.registry import Context, Outcome, Spec, pub


__all__ = ["SPECS"]


# --- 7. DropConnect, spatial dropout, DropBlock --------------------------------------------------
def _measure_structured_dropout(ctx: Context) -> Outcome:
    """DropConnect vs dropout in an MLP; spatial dropout and DropBlock vs dropout in a CNN."""
    splits = load_mnist1d(ctx)
    cfg = train_config(ctx, mlp_epochs(ctx))
    mlp = train_group(ctx, splits, mlp_spec(HIDDEN), [Arm("dropout", cfg, (DROP, DROP))],
                      span=(0.0, 0.1))
    # Moment-matching inference, as Wan et al. define it (ANCHORS.md), not the mean network.
    dc_spec = ModelSpec(kind="mlp", hidden=HIDDEN, dropout={"hidden": {
        "p": DROP, "layer": "dropconnect", "options": {"inference": "moment"}}})
    dc = train_group(ctx, splits, dc_spec, [Arm("dropconnect", cfg)], span=(0.1, 0.3))
    cnn_epochs = ctx.pick(2, 40, 100)
    ccfg = train_config(ctx, cnn_epochs)
    p = 0.2
    layers = {
        "dropout": {"p": p, "layer": "dropout"},
        "spatial": {"p": p, "layer": "spatial"},
        "dropblock": {"p": p, "layer": "dropblock", "options": {"block_size": 3}},
    }
    cnn: dict[str, dict[int, float]] = {}
    for i, (name, drop) in enumerate(layers.items()):
        spec = ModelSpec(kind="cnn1d", hidden=(25, 25, 25), kernel_size=(5, 3, 3), stride=2,
                         padding=1, dropout={"hidden": drop})
        res = train_group(ctx, splits, spec, [Arm(name, ccfg)],
                          span=(0.3 + 0.7 * i / 3, 0.3 + 0.7 * (i + 1) / 3))
        cnn[name] = res.errors(name)
    e = {
        "MLP dropout": est(mlp.errors("dropout")),
        "MLP DropConnect": est(dc.errors("dropconnect")),
        "CNN dropout": est(cnn["dropout"]),
        "CNN spatial dropout": est(cnn["spatial"]),
        "CNN DropBlock": est(cnn["dropblock"]),
    }
    d = {
        "DropConnect - dropout (MLP)": diff(dc.errors("dropconnect"), mlp.errors("dropout")),
        "spatial - dropout (CNN)": diff(cnn["spatial"], cnn["dropout"]),
        "DropBlock - dropout (CNN)": diff(cnn["dropblock"], cnn["dropout"]),
    }
    parts = {k: v.mean <= 0 for k, v in d.items()}
    values = {k: v.to_dict() for k, v in {**e, **d}.items()}
    return Outcome(
        ", ".join(f"{k} {txt(v)}" for k, v in e.items()),
        values, all(parts.values()),
        setting_mlp(ctx, splits) + f"; MLP hidden p={DROP} (dropout, or DropConnect on the hidden "
        f"weights with moment-matching inference); CNN: MNIST-1D reference CNN (25-25-25 "
        f"channels, kernels 5-3-3, stride 2), "
        f"{cnn_epochs} epochs, hidden p={p}: element-wise, spatial (whole channels) or DropBlock "
        f"(block 3)",
        [f"{k}: {txt(v, ' pts', signed=True)} -> {'passes' if parts[k] else 'fails'}"
         for k, v in d.items()],
        {"panels": [{"title": "MLP", "ylabel": "test error (%)",
                     "bars": [bar("dropout", e["MLP dropout"]), bar("DropConnect", e["MLP DropConnect"])]},
                    {"title": "CNN", "ylabel": "test error (%)",
                     "bars": [bar("dropout", e["CNN dropout"]), bar("spatial", e["CNN spatial dropout"]),
                              bar("DropBlock", e["CNN DropBlock"])]}]},
    )


# --- 8. variational vs per-step dropout in a GRU -------------------------------------------------
def _measure_variational_rnn(ctx: Context) -> Outcome:
    """Variational (locked) against per-step dropout in a GRU (Gal & Ghahramani 2016)."""
    base = load(ctx, "mnist1d", subsample=ctx.pick(200, 1000, 3600))
    length = 10
    splits = as_sequence(base, length)
    epochs = ctx.pick(1, 25, 40)
    cfg = train_config(ctx, epochs)
    p = 0.3
    specs = {
        "per-step": ModelSpec(kind="gru", hidden=(32, 32), dropout={"hidden": p}),
        "variational": ModelSpec(kind="gru", hidden=(32, 32), dropout={"recurrent": p}),
    }
    errs = {}
    for i, (name, spec) in enumerate(specs.items()):
        # vmap runs a GRU no faster than a plain loop on CPU: train one run at a time.
        res = train_group(ctx, splits, spec, [Arm(name, cfg)], span=(i / 2, (i + 1) / 2),
                          engine="trainer")
        errs[name] = res.errors(name)
    ps, va = est(errs["per-step"]), est(errs["variational"])
    d = diff(errs["variational"], errs["per-step"])
    return Outcome(
        f"per-step {txt(ps)}, variational {txt(va)}, variational - per-step "
        f"{txt(d, ' pts', signed=True)}",
        {"per-step": ps.to_dict(), "variational": va.to_dict(), "variational - per-step": d.to_dict()},
        d.mean < 0,
        f"mnist1d, {len(splits.x_train)} training examples read as {length} steps x "
        f"{splits.input_shape[1]} values; GRU 32-32, last step -> Linear; Adam lr 0.01, batch 100, "
        f"{epochs} epochs; dropout p={p} on each layer's output sequence: a fresh mask per step, "
        f"or one mask per sequence; {len(ctx.seeds)} seeds",
        [f"paired 95% CI of variational - per-step {'excludes' if d.hi < 0 or d.lo > 0 else 'includes'} 0",
         "both variants mask the outputs of each layer (the inputs of the next); the fused GRU "
         "leaves h(t-1) itself unmasked in both"],
        {"panels": [{"title": "GRU test error", "ylabel": "test error (%)",
                     "bars": [bar("per-step", ps), bar("variational", va)]}]},
    )


# --- 9. concrete dropout ------------------------------------------------------------------------
def _measure_concrete_rate(ctx: Context) -> Outcome:
    """The learned concrete-dropout rate against the amount of data (Gal, Hron & Kendall 2017)."""
    sizes = ctx.pick((50, 400), (50, 200, 1000, 4000), (25, 50, 100, 200, 500, 1000, 2000, 4000))
    steps = ctx.pick(20, 500, 2000)
    length_scale = 1e-4
    rates: dict[int, dict[int, float]] = {}
    errors: dict[int, dict[int, float]] = {}
    n_pool = math.ceil(max(sizes) / 0.9) + 1
    for i, n in enumerate(sizes):
        splits = load(ctx, "sine", subsample=n, options={"n": n_pool})
        drop = {"p": 0.1, "layer": "concrete",
                "options": {"weight_regularizer": length_scale**2 / n, "dropout_regularizer": 2.0 / n}}
        spec = ModelSpec(kind="mlp", hidden=(64, 64), dropout={"hidden": drop})
        batch = min(50, n)
        epochs = max(1, math.ceil(steps / math.ceil(n / batch)))
        cfg = train_config(ctx, epochs, batch_size=batch)
        res = train_group(ctx, splits, spec, [Arm("concrete", cfg)], keep_models=True,
                          span=(i / len(sizes), (i + 1) / len(sizes)))
        from droplab.nn import ConcreteDropout

        rates[n], errors[n] = {}, {}
        for s in ctx.seeds:
            layers = [m for m in res.model("concrete", s).modules() if isinstance(m, ConcreteDropout)]
            rates[n][s] = sum(m.p for m in layers) / len(layers)
            errors[n][s] = res.test["concrete"][s]["rmse"]
    e = {n: est(rates[n]) for n in sizes}
    means = [e[n].mean for n in sizes]
    rho = spearman(list(sizes), means)
    agrees = means[-1] < means[0] and rho < 0
    values = {f"N={n} learned p": e[n].to_dict() for n in sizes}
    values.update({f"N={n} test RMSE": est(errors[n]).to_dict() for n in sizes})
    return Outcome(
        "learned rate: " + ", ".join(f"N={n}: {txt(e[n], '', 3)}" for n in sizes)
        + f"; Spearman(N, p) = {fmt(rho, 2)}",
        values, agrees,
        f"sine regression y = sin(x) + 0.1 eps, N training points, 1000 test; MLP 1-64-64-1 with "
        f"concrete dropout after each hidden layer (init p 0.1, t 0.1, wr = l^2/N with l = "
        f"{length_scale:g}, dr = 2/N); Adam lr 0.01, batch min(50, N), {steps} updates; "
        f"{len(ctx.seeds)} seeds; reported p: mean over the two layers",
        [f"p falls from the smallest to the largest N: {'yes' if means[-1] < means[0] else 'no'}",
         f"Spearman correlation of N and mean p: {fmt(rho, 2)}"],
        {"panels": [{"title": "Learned dropout rate against N", "xlabel": "training points N",
                     "ylabel": "learned p", "xlog": True,
                     "lines": [line("concrete dropout p", sizes, [e[n] for n in sizes])]}]},
    )


#: The findings of this module, as the registry holds them.
SPECS = [
    Spec(7, "DropConnect vs dropout; spatial dropout and DropBlock vs dropout in CNNs",
         "Wan, Zeiler, Zhang, LeCun, Fergus, \"Regularization of Neural Networks using "
         "DropConnect\", ICML 2013; Ghiasi, Lin, Le, \"DropBlock\", NeurIPS 2018, arXiv:1810.12890; "
         "Tompson, Goroshin, Jain, LeCun, Bregler, \"Efficient Object Localization Using "
         "Convolutional Networks\", CVPR 2015, arXiv:1411.4280",
         pub("DropConnect, MNIST 784-800-800-10 without augmentation: 98.80% +- 0.034 accuracy "
              "(S). DropBlock: ResNet-50 ImageNet top-1 76.51 -> 78.13. SpatialDropout: one draw "
              "per (example, channel), applied to the whole feature map (no figure recorded)",
              **{"DropConnect MNIST accuracy (%)": 98.80, "DropConnect +- (%)": 0.034,
                 "ResNet-50 top-1 baseline (%)": 76.51, "ResNet-50 top-1 DropBlock (%)": 78.13}),
         "(a) DropConnect's mean test error is <= dropout's in the MLP; (b) spatial dropout's and "
         "(c) DropBlock's mean test errors are <= element-wise dropout's in the CNN (same rate; "
         "mean paired differences <= 0).",
         _measure_structured_dropout, 55),
    Spec(8, "Variational (locked) vs per-step dropout in a GRU",
         "Gal, Ghahramani, \"A Theoretically Grounded Application of Dropout in Recurrent Neural "
         "Networks\", NeurIPS 2016, arXiv:1512.05287",
         pub("one mask per sequence reused at every time step on inputs, outputs and recurrent "
              "state; Penn Treebank test perplexity 73.4 (best single model)",
              **{"PTB test perplexity": 73.4}),
         "Variational (one mask per sequence) dropout's mean test error is lower than per-step "
         "dropout's at the same rate (mean paired difference < 0).",
         _measure_variational_rnn, 40),
    Spec(9, "Concrete dropout: the learned rate falls as data grows",
         "Gal, Hron, Kendall, \"Concrete Dropout\", NeurIPS 2017, arXiv:1705.07832",
         pub("relaxed mask z = 1 - sigmoid((log p - log(1-p) + log u - log(1-u)) / t), t = 0.1; "
              "loss adds wr*||W||^2/(1-p) + dr*K*(p log p + (1-p) log(1-p)); with wr = l^2/N and "
              "dr = 2/N the learned rate falls as the data grow (no figure recorded in ANCHORS.md)",
              **{"temperature t": 0.1}),
         "The mean learned rate at the largest N is lower than at the smallest N, and the Spearman "
         "correlation between N and the mean learned rate is negative.",
         _measure_concrete_rate, 44),
]
