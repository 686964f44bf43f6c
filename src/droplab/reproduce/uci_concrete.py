"""Concrete dropout on the UCI benchmark: every split of a data set trained as one batched net.

Gal, Hron, Kendall, "Concrete Dropout", NeurIPS 2017, arXiv:1705.07832. The net of the
MC-dropout protocol with a learned rate in front of each dense layer, as the paper's public code
wraps every ``Dense`` in ``ConcreteDropout`` (yaringal/ConcreteDropout)::

    ConcreteDropout(p_0) -> Linear(d, H) -> ReLU -> ConcreteDropout(p_1) -> Linear(H, 2)

with a heteroscedastic head (mean and log-variance, the code's ``heteroscedastic_loss``:
``exp(-log_var) (y - mean)**2 + log_var`` averaged over the batch) plus, per layer, the
regularizer of :func:`droplab.functional.concrete.concrete_regularization` with
``wr = l**2 / N`` and ``dr = 2 / N`` (the code's choice for the heteroscedastic loss, whose
precision is learned: no tau). K members (one per split) are stacked as ``(K, ...)`` tensors;
the loss is the sum of the members' losses, so Adam (elementwise) trains each member exactly
as if alone. :func:`droplab.reproduce.uci.run_uci` prepares the data and the metrics table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch

from droplab.functional.concrete import batched_concrete_dropout, concrete_regularization
from droplab.functional.random import rand

__all__ = ["concrete_forward", "train_concrete", "concrete_mc_metrics"]

#: The parameter names of the batched net: weights ``(K, in, out)``, biases ``(K, 1, out)``,
#: and the logits of the two rates ``(K, 2)`` (input, hidden).
NAMES = ("W0", "b0", "W1", "b1", "p_logit")


def concrete_forward(params: dict[str, torch.Tensor], x: torch.Tensor,
                     generator: torch.Generator | None, training: bool = True) -> torch.Tensor:
    """``(K, B, d)`` inputs -> ``(K, B, 2)`` mean and log-variance (standardized units).

    ``training=True`` draws the relaxed masks (one uniform per element, from ``generator``), as
    the paper's code does in training and in its MC passes; ``False`` drops nothing.
    """
    logit = params["p_logit"]
    if training:
        x = batched_concrete_dropout(x, logit[:, 0], rand(x.shape, generator, x.device))
    h = torch.relu(torch.baddbmm(params["b0"], x, params["W0"]))
    if training:
        h = batched_concrete_dropout(h, logit[:, 1], rand(h.shape, generator, h.device))
    return torch.baddbmm(params["b1"], h, params["W1"])


def _loss(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
          generator: torch.Generator, wr: float, dr: float) -> torch.Tensor:
    out = concrete_forward(params, x, generator)
    mean, log_var = out[..., 0], out[..., 1]
    data = (torch.exp(-log_var) * (y - mean) ** 2 + log_var).mean(1)  # (K,)
    logit = params["p_logit"]
    reg = concrete_regularization(
        logit[:, 0], params["W0"].square().sum((1, 2)) + params["b0"].square().sum((1, 2)), x.shape[2], wr, dr
    ) + concrete_regularization(
        logit[:, 1], params["W1"].square().sum((1, 2)) + params["b1"].square().sum((1, 2)), params["W0"].shape[2], wr, dr
    )
    return (data + reg).sum()


def train_concrete(
    params: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_regularizer: float,
    dropout_regularizer: float,
    seed: int,
    progress: Callable[[int], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Train the K members in place (Adam, shuffled mini-batches per member and epoch).

    Args:
        params: :data:`NAMES` -> stacked tensors (modified in place and returned).
        x: ``(K, N, d)`` standardized inputs. y: ``(K, N)`` standardized targets.
        epochs, batch_size, lr: as in the MC-dropout protocol (a last, smaller batch is kept).
        weight_regularizer, dropout_regularizer: ``wr`` and ``dr``.
        seed: of the one generator behind data order and masks (same seed: same bits).
        progress: called with the epoch number after each epoch.
    """
    g = torch.Generator().manual_seed(int(seed))
    leaves = [params[n].requires_grad_(True) for n in NAMES]
    opt = torch.optim.Adam(leaves, lr=lr)
    k, n, d = x.shape
    for epoch in range(epochs):
        order = torch.argsort(torch.rand(k, n, generator=g), dim=1)
        for start in range(0, n, batch_size):
            idx = order[:, start:start + batch_size]
            xb = x.gather(1, idx.unsqueeze(-1).expand(-1, -1, d))
            yb = y.gather(1, idx)
            opt.zero_grad(set_to_none=True)
            _loss(params, xb, yb, g, weight_regularizer, dropout_regularizer).backward()
            opt.step()
        if progress is not None:
            progress(epoch + 1)
    for t in leaves:
        t.requires_grad_(False)
    return params


def _chunks(params: dict[str, torch.Tensor], x: torch.Tensor, passes: int, seed: int,
            budget_mb: int) -> Iterator[torch.Tensor]:
    k, n, d = x.shape
    width = d + params["W0"].shape[2] + 2
    per_pass = k * n * width * 4 * 3  # inputs, hidden, uniforms (float32)
    step = max(1, min(passes, (budget_mb << 20) // per_pass))
    g = torch.Generator().manual_seed(int(seed))
    done = 0
    while done < passes:
        t = min(step, passes - done)
        out = concrete_forward(params, x.repeat(1, t, 1), g)  # (K, t*N, 2)
        yield out.view(k, t, n, 2)
        done += t


@torch.no_grad()
def concrete_mc_metrics(
    params: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    mean_y: torch.Tensor,
    std_y: torch.Tensor,
    *,
    passes: int,
    seed: int,
    budget_mb: int = 16,
) -> dict[str, torch.Tensor]:
    """Per member: RMSE of the MC mean, RMSE without dropout, and the MC log-likelihood.

    The predictive density is the uniform mixture of the T passes' Gaussians
    ``N(mean_t, exp(log_var_t))`` in the target's units, per test point:
    ``logsumexp_t log N(y; mean_t, var_t) - log T``, averaged over points (the paper's code sums
    over points before the logsumexp, a joint likelihood; the protocol's LL is per point).

    Args:
        x: ``(K, N, d)`` standardized inputs. y: ``(K, N)`` float64 targets, original units.
        mean_y, std_y: ``(K,)`` the standardization of each member's target.
        passes: T. seed: of the masks. budget_mb: activations per chunk of passes.

    Returns:
        ``{"rmse", "ll", "rmse_deterministic"}``, each ``(K,)`` float64.
    """
    mu, sd = mean_y.view(-1, 1, 1), std_y.view(-1, 1, 1)
    yy = y.unsqueeze(1)
    total = torch.zeros_like(y)
    lse = torch.full_like(y, -math.inf)
    for out in _chunks(params, x, passes, seed, budget_mb):
        out = out.double()
        mean = out[..., 0] * sd + mu
        log_var = out[..., 1] + 2 * torch.log(sd)
        total += mean.sum(1)
        log_p = -0.5 * (math.log(2 * math.pi) + log_var + (yy - mean) ** 2 * torch.exp(-log_var))
        lse = torch.logaddexp(lse, torch.logsumexp(log_p, 1))
    rmse = ((y - total / passes) ** 2).mean(1).sqrt()
    ll = (lse - math.log(passes)).mean(1)
    det = concrete_forward(params, x, None, training=False)[..., 0].double() * sd[:, 0] + mu[:, 0]
    return {"rmse": rmse, "ll": ll, "rmse_deterministic": ((y - det) ** 2).mean(1).sqrt()}
