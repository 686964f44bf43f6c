"""R-Drop: two dropout passes per step and a symmetric KL term between them.

Liang, Wu, Li, Wang, Meng, Qin, Chen, Zhang, Liu, "R-Drop: Regularized Dropout for Neural
Networks", NeurIPS 2021, arXiv:2106.14448. Each batch goes through the model twice (two
independent dropout masks); the loss is the task loss of both passes plus ``alpha`` times the
symmetric KL divergence between their predicted distributions, eq. (3):
``L = NLL_1 + NLL_2 + alpha / 2 * (KL(P1 || P2) + KL(P2 || P1))``.

droplab minimises half of it, ``(NLL_1 + NLL_2) / 2 + alpha / 4 * (KL(P1||P2) + KL(P2||P1))``:
the same minimiser and the same meaning of ``alpha``, with the task term on the scale of
plain training, so a learning rate carries over. For regression the KL term becomes the mean
squared difference of the two predictions (the paper's choice for its regression task), weighted
the same way. A step costs two forward and two backward passes: about twice plain training (the
trainer's ``seconds`` per epoch shows it).

Set ``TrainConfig(rdrop=alpha)``; the :class:`~droplab.train.Trainer` does the rest.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["rdrop_loss"]


def rdrop_loss(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    alpha: float,
    *,
    classification: bool = True,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """The R-Drop objective of one batch: ``(task loss, total loss)``.

    Args:
        model: the network, in training mode (its dropout layers draw a new mask per call).
        x, y: the batch.
        alpha: weight of the symmetric KL term, >= 0 (the paper uses 0.3 to 5).
        classification: ``True`` (default): cross-entropy and KL between softmax outputs;
            ``False``: MSE and the squared difference of the two predictions.
        loss_fn: the task loss; default cross-entropy / MSE by ``classification``.

    Returns:
        The task loss averaged over the two passes (what a history reports as ``train_loss``)
        and the total to back-propagate.

    Example::

        task, total = rdrop_loss(model, xb, yb, alpha=1.0)
        total.backward()
    """
    # Two calls, not one call on the batch concatenated with itself (the paper's code): layers
    # that draw one mask per call (DropConnect, WeightDrop) would give both halves the same mask.
    out1, out2 = model(x), model(x)
    if loss_fn is None:
        loss_fn = F.cross_entropy if classification else F.mse_loss
    task = 0.5 * (loss_fn(out1, y) + loss_fn(out2, y))
    if classification:
        logp, logq = F.log_softmax(out1, -1), F.log_softmax(out2, -1)
        sym = F.kl_div(logq, logp, log_target=True, reduction="batchmean") + F.kl_div(
            logp, logq, log_target=True, reduction="batchmean"
        )
        reg = 0.25 * sym
    else:
        reg = 0.5 * F.mse_loss(out1, out2)
    return task, task + alpha * reg
