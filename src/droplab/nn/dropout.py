"""Unit-wise dropout layers; each stores its arguments and calls :mod:`droplab.functional`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from droplab._checks import check_choice, check_nonneg_float, check_shared_axes
from droplab.functional.unit import (
    DROP_PATH_MODES,
    DROPOUT_MODES,
    alpha_dropout,
    drop_path,
    dropout,
    feature_alpha_dropout,
    gaussian_dropout,
    gaussian_noise,
    spatial_dropout,
)
from droplab.nn._base import StochasticLayer
from droplab.functional import member_rates as _member  # per-member rates (nn/member_rates.py)

__all__ = [
    "Dropout",
    "SpatialDropout",
    "GaussianDropout",
    "AlphaDropout",
    "DropPath",
    "FeatureAlphaDropout",
    "GaussianNoise",
]


class Dropout(StochasticLayer):
    """Bernoulli dropout of units, inverted (default) or classic.

    Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov, JMLR 15, 2014. In the default
    ``"inverted"`` mode (torch's form) kept units are scaled by ``1 / (1 - p)`` during training and
    eval is the identity; in ``"classic"`` mode (the paper's form) training only masks and eval
    multiplies by ``1 - p``. Both are equal in expectation. See :func:`droplab.functional.dropout`.

    Args:
        p: probability of dropping a unit, in [0, 1). Default 0.5.
        mode: ``"inverted"`` (default) or ``"classic"``.
        shared_axes: dimensions that share one mask value (default ``()``: none), e.g. ``(1,)``
            on ``(N, T, F)`` drops the same features at every time step.
        generator: optional ``torch.Generator`` the masks are drawn from.

    Shape:
        Input ``(*)``, output ``(*)``.

    Example:
        >>> layer = Dropout(0.2, mode="classic")
        >>> y = layer(torch.randn(4, 10))
    """

    def __init__(
        self,
        p: float = 0.5,
        mode: str = "inverted",
        shared_axes: int | Sequence[int] = (),
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(p, generator=generator)
        self.mode = check_choice("mode", mode, DROPOUT_MODES)
        self.shared_axes = check_shared_axes(shared_axes)

    def forward(self, x: Tensor) -> Tensor:
        if "rate" in self._buffers:  # one rate per population member (nn/member_rates.py)
            return _member.member_dropout(
                x, self._buffers["rate"], mode=self.mode, shared_axes=self.shared_axes,
                training=self.training, generator=self.generator,
            )
        return dropout(
            x,
            self.p,
            mode=self.mode,
            shared_axes=self.shared_axes,
            training=self.training,
            generator=self.generator,
        )

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode!r}, shared_axes={self.shared_axes}"


class SpatialDropout(StochasticLayer):
    """Drop whole channels (feature maps) of 1d, 2d or 3d convolutional activations.

    Tompson, Goroshin, Jain, LeCun, Bregler, CVPR 2015. One draw per (example, channel); the input
    rank fixes the layout, ``(N, C, L)``, ``(N, C, H, W)`` or ``(N, C, D, H, W)``, and anything else
    raises rather than being reinterpreted. Inverted scaling. See
    :func:`droplab.functional.spatial_dropout`.

    Args:
        p: probability of dropping a channel, in [0, 1). Default 0.5.
        generator: optional ``torch.Generator`` the masks are drawn from.

    Shape:
        Input ``(N, C, *spatial)`` with 1 to 3 spatial dimensions, output the same.

    Example:
        >>> y = SpatialDropout(0.1)(torch.randn(2, 8, 16, 16))
    """

    def forward(self, x: Tensor) -> Tensor:
        if "rate" in self._buffers:  # one rate per population member (nn/member_rates.py)
            return _member.member_spatial_dropout(
                x, self._buffers["rate"], training=self.training, generator=self.generator
            )
        return spatial_dropout(x, self.p, training=self.training, generator=self.generator)


class GaussianDropout(StochasticLayer):
    """Multiplicative Gaussian noise ``N(1, p / (1 - p))``; identity at inference.

    Srivastava et al., JMLR 15, 2014, section 10. See :func:`droplab.functional.gaussian_dropout`.

    Args:
        p: equivalent Bernoulli drop probability, in [0, 1). Default 0.5 (noise variance 1).
        generator: optional ``torch.Generator`` the noise is drawn from.

    Shape:
        Input ``(*)``, output ``(*)``.

    Example:
        >>> y = GaussianDropout(0.5)(torch.randn(4, 10))
    """

    def forward(self, x: Tensor) -> Tensor:
        return gaussian_dropout(x, self.p, training=self.training, generator=self.generator)


class AlphaDropout(StochasticLayer):
    """Alpha dropout for SELU networks: keeps mean 0 and variance 1 of standardized inputs.

    Klambauer, Unterthiner, Mayr, Hochreiter, "Self-Normalizing Neural Networks", NeurIPS 2017,
    arXiv:1706.02515. Not mean preserving for general inputs: the dropped value and the affine
    correction are tuned to inputs with mean 0 and variance 1. See
    :func:`droplab.functional.alpha_dropout`.

    Args:
        p: probability of dropping a unit, in [0, 1). Default 0.5 (the paper uses 0.05-0.1).
        shared_axes: dimensions that share one mask value, like Keras' ``noise_shape``
            (default ``()``: none), e.g. ``(1,)`` on ``(N, T, F)`` drops the same features at
            every time step.
        generator: optional ``torch.Generator`` the masks are drawn from.

    Shape:
        Input ``(*)``, output ``(*)``.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(10, 10), torch.nn.SELU(), AlphaDropout(0.1))
        >>> y = AlphaDropout(0.1, shared_axes=1)(torch.randn(8, 20, 32))
    """

    mean_preserving = False

    def __init__(
        self,
        p: float = 0.5,
        shared_axes: int | Sequence[int] = (),
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(p, generator=generator)
        self.shared_axes = check_shared_axes(shared_axes)

    def forward(self, x: Tensor) -> Tensor:
        if "rate" in self._buffers:  # one rate per population member (nn/member_rates.py)
            return _member.member_alpha_dropout(
                x, self._buffers["rate"], shared_axes=self.shared_axes, training=self.training,
                generator=self.generator,
            )
        return alpha_dropout(
            x,
            self.p,
            shared_axes=self.shared_axes,
            training=self.training,
            generator=self.generator,
        )

    def extra_repr(self) -> str:
        return f"p={self.p}" + (f", shared_axes={self.shared_axes}" if self.shared_axes else "")


class DropPath(StochasticLayer):
    """Stochastic depth: drop a residual branch for whole examples.

    Huang, Sun, Liu, Sedra, Weinberger, "Deep Networks with Stochastic Depth", ECCV 2016,
    arXiv:1603.09382, per sample as in timm (``mode="row"``) or for the whole batch at once as
    torchvision's ``StochasticDepth(p, "batch")``. Put it on the branch:
    ``x = x + self.drop(f(x))``. See :func:`droplab.functional.drop_path`.

    Args:
        p: probability of dropping the branch for a sample, in [0, 1). Default 0.5.
        scale_by_keep: scale kept samples by ``1 / (1 - p)`` (default ``True``). With ``False``
            the layer is not mean preserving (the caller scales at inference).
        mode: ``"row"`` (default): one draw per sample; ``"batch"``: one draw for the batch.
        generator: optional ``torch.Generator`` the masks are drawn from.

    Shape:
        Input ``(N, *)``, output ``(N, *)``.

    Example:
        >>> y = DropPath(0.1)(torch.randn(8, 196, 384))
        >>> y = DropPath(0.1, mode="batch")(torch.randn(8, 196, 384))
    """

    def __init__(
        self,
        p: float = 0.5,
        scale_by_keep: bool = True,
        mode: str = "row",
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(p, generator=generator)
        self.scale_by_keep = bool(scale_by_keep)
        self.mode = check_choice("mode", mode, DROP_PATH_MODES)
        # Unscaled kept samples make E[train output] = (1 - p) * eval output.
        self.mean_preserving = self.scale_by_keep  # type: ignore[misc]

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(
            x,
            self.p,
            mode=self.mode,
            scale_by_keep=self.scale_by_keep,
            training=self.training,
            generator=self.generator,
        )

    def extra_repr(self) -> str:
        mode = f", mode={self.mode!r}" if self.mode != "row" else ""
        return f"p={self.p}, scale_by_keep={self.scale_by_keep}{mode}"


class FeatureAlphaDropout(StochasticLayer):
    """Alpha dropout of whole channels (torch's ``nn.FeatureAlphaDropout``) for SELU CNNs.

    Klambauer, Unterthiner, Mayr, Hochreiter, "Self-Normalizing Neural Networks", NeurIPS 2017,
    arXiv:1706.02515, channel-wise as SpatialDropout (Tompson et al., CVPR 2015): one draw per
    (example, channel); a dropped map takes SELU's saturation value, then the affine map keeps
    mean 0 and variance 1 of standardized inputs. Not mean preserving for general inputs. The
    rank fixes the layout as for :class:`SpatialDropout`. See
    :func:`droplab.functional.feature_alpha_dropout`.

    Args:
        p: probability of dropping a channel, in [0, 1). Default 0.5.
        generator: optional ``torch.Generator`` the masks are drawn from.

    Shape:
        Input ``(N, C, *spatial)`` with 1 to 3 spatial dimensions, output the same.

    Example:
        >>> y = FeatureAlphaDropout(0.1)(torch.randn(2, 8, 16, 16))
    """

    mean_preserving = False

    def forward(self, x: Tensor) -> Tensor:
        if "rate" in self._buffers:  # one rate per population member (nn/member_rates.py)
            return _member.member_feature_alpha_dropout(
                x, self._buffers["rate"], training=self.training, generator=self.generator
            )
        return feature_alpha_dropout(x, self.p, training=self.training, generator=self.generator)


class GaussianNoise(StochasticLayer):
    """Additive zero-mean Gaussian noise in training (Keras' ``GaussianNoise``); eval: identity.

    Training with input noise: Sietsma & Dow, Neural Networks 4(1), 1991; Bishop, "Training
    with noise is equivalent to Tikhonov regularization", Neural Computation 7(1), 1995. Adds
    ``N(0, stddev**2)`` to every unit; it drops nothing, so ``p`` is ``None``. Mean preserving.
    See :func:`droplab.functional.gaussian_noise`.

    Args:
        stddev: standard deviation of the noise, a finite number >= 0. Default 0.1.
        generator: optional ``torch.Generator`` the noise is drawn from.

    Shape:
        Input ``(*)``, output ``(*)``.

    Example:
        >>> y = GaussianNoise(0.1)(torch.randn(4, 10))
    """

    def __init__(self, stddev: float = 0.1, *, generator: torch.Generator | None = None) -> None:
        super().__init__(None, generator=generator)
        self.stddev = check_nonneg_float("stddev", stddev)

    def forward(self, x: Tensor) -> Tensor:
        return gaussian_noise(x, self.stddev, training=self.training, generator=self.generator)

    def extra_repr(self) -> str:
        return f"stddev={self.stddev}"
