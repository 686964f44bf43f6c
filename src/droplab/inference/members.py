"""Member predictions of models that are ensembles by construction (one API with MC dropout).

:func:`droplab.inference.mc_predict` reads three kinds of model as M "members" instead of T
random passes, and returns the same :class:`~droplab.inference.MCResult` (mean, predictive
entropy, mutual information = member disagreement, per-member draws on request):

* a model with a ``member_forward(x)`` method returning ``(M, N, ...)``: the deep ensemble that
  :func:`droplab.ensemble` returns (Lakshminarayanan, Pritzel, Blundell, NeurIPS 2017,
  arXiv:1612.01474);
* a model holding Masksembles layers (Durasov et al., CVPR 2021, arXiv:2012.08334) or
  BatchEnsemble layers (Wen, Tran, Ba, ICLR 2020, arXiv:2002.06715): these split a batch into
  M equal groups, one per member, so the input is tiled M times and the output split back.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from droplab.errors import ConfigError, DataError

__all__ = ["member_outputs", "member_count"]


def member_count(model: nn.Module) -> int | None:
    """The number of members M of an ensemble-by-construction model, or ``None``.

    Args:
        model: any module.

    Returns:
        ``model.members`` for a model with ``member_forward``; the common ``members`` of its
        Masksembles/BatchEnsemble layers; ``None`` for anything else (an MC dropout model).

    Example:
        >>> member_count(nn.Linear(3, 2)) is None
        True
    """
    if callable(getattr(model, "member_forward", None)):
        return int(model.members)
    counts = {m.members for m in model.modules() if getattr(m, "splits_batch_into_members", False)}
    if not counts:
        return None
    if len(counts) > 1:
        raise ConfigError(
            f"the model's Masksembles/BatchEnsemble layers disagree on the number of members: "
            f"{sorted(counts)}"
        )
    return counts.pop()


def _is_member_model(model: nn.Module) -> bool:
    return member_count(model) is not None


def member_outputs(model: nn.Module, x: Tensor) -> Tensor:
    """Every member's output on ``x``, stacked: ``(M, N, ...)``, in eval mode, without gradients.

    Args:
        model: a model :func:`member_count` recognises.
        x: inputs ``(N, ...)``, moved to the model's device.

    Returns:
        The members' outputs on the CPU.

    Shape:
        ``x`` ``(N, *)`` -> ``(M, N, *out)``.

    Example::

        out = member_outputs(ensemble_model, x)  # (5, N, C) for 5 members
    """
    m = member_count(model)
    if m is None:
        raise ConfigError(
            f"{type(model).__name__} is no ensemble: it has no member_forward method and no "
            f"Masksembles/BatchEnsemble layers"
        )
    first = next(model.parameters(), None)
    if first is not None:
        x = x.to(first.device)
    flags = {mod: mod.training for mod in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            if callable(getattr(model, "member_forward", None)):
                out = model.member_forward(x)
            else:
                out = model(x.repeat(m, *([1] * (x.dim() - 1))))
                if not isinstance(out, Tensor) or out.shape[0] != m * x.shape[0]:
                    raise DataError(
                        f"a model with {m}-member layers must return {m} x {x.shape[0]} rows for "
                        f"the tiled input, got {tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}"
                    )
                out = out.reshape(m, x.shape[0], *out.shape[1:])
    finally:
        for mod, flag in flags.items():
            mod.training = flag
    return out.cpu()
