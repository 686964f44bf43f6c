"""The torch.func path: any ``nn.Module`` stacked and vmapped over the members.

``stack_module_state`` + ``functional_call`` + ``vmap(grad_and_value(...),
randomness="different")``; batch-norm statistics are stacked buffers. A module's dropout rate is
held in a per-member ``rate`` buffer where the layer can (:func:`droplab.nn.rates_as_buffers`),
so members differ in those rates and in their schedules over training, besides seed and
per-member training hyperparameters; other rates are module configuration, shared by the
members. Their dropout draws are independent per member. A model vmap cannot run raises
:class:`Unstackable`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from droplab.sweep.population.base import Member, Unstackable, _Net
from droplab.sweep.population.losses import gaussian_nll

__all__ = ["ModuleNet", "module_signature"]


class ModuleNet(_Net):
    """Any ``nn.Module`` stacked with ``torch.func`` (see this module's docstring).

    Args:
        build: ``member -> nn.Module``; called once per member with the member's seed
            already applied to torch's RNG (inside ``torch.random.fork_rng``).
        members: the population.

    Raises:
        Unstackable: the members' modules differ in structure, or carry a learned-rate
            regularizer (``regularization()``), which ``functional_call`` cannot reach.
    """

    #: Train image models with channels-last inputs (True); False keeps vmap's default layout.
    use_channels_last = True

    def __init__(self, build: Callable[[Member], nn.Module], members: Sequence[Member]) -> None:
        modules = []
        for m in members:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(m.seed)
                modules.append(build(m))
        from droplab.nn import rates_as_buffers

        # Dropout rates become per-member buffers, so models that differ only in their rates
        # (and in those rates' schedules, _member_schedules) stack.
        for mod in modules:
            rates_as_buffers(mod)
        signatures = {module_signature(mod) for mod in modules}
        if len(signatures) > 1:
            raise Unstackable("the configurations build modules of different structure")
        template = modules[0]
        if any(callable(getattr(mod, "regularization", None)) for mod in template.modules()):
            raise Unstackable("a module adds its own regularization() term to the loss")
        from torch.func import stack_module_state

        params, buffers = stack_module_state(modules)
        self._params = {k: v.detach().clone() for k, v in params.items()}
        self._buffers = {k: v.detach().clone() for k, v in buffers.items()}
        self.template = template
        self.names = list(self._params)
        from droplab.regularize import weight_parameters

        ids = {id(p): n for n, p in template.named_parameters()}
        self.weight_names = [ids[id(p)] for p in weight_parameters(template) if id(p) in ids]
        self._module_of = {}
        for mod_name, mod in template.named_modules():
            for pname, _ in mod.named_parameters(recurse=False):
                self._module_of[f"{mod_name}.{pname}" if mod_name else pname] = mod
        if any(
            isinstance(self._module_of.get(n), nn.modules.conv._ConvTransposeNd) for n in self.weight_names
        ):
            self._has_transpose = True
        else:
            self._has_transpose = False
        self._grad_fn = None
        self._pred_fn = None
        self._width: int | None = None  # activation_width, measured on first use
        # Images (N, C, H, W) into a first Conv2d train in a channels-last layout (train_step).
        first = next((m for m in template.modules() if next(m.parameters(recurse=False), None) is not None), None)
        self.channels_last = isinstance(first, nn.Conv2d) and self.use_channels_last
        # True when each member predicts on its own inputs (x of shape (K, N, ...)): a
        # population with per-member data sets (groups) sets it.
        self.per_member_inputs = False
        # Scheduled layers with a rate buffer follow each member's own schedule (rows of
        # _rows_scheduled); the others are shared, so one schedule drives the template's layer.
        self._scheduled, self._rows_scheduled = _member_schedules(modules)
        self._scheduled_rates: dict[str, torch.Tensor] = {}
        units = [s.unit for _, _, s in self._scheduled]
        units += [s.unit for rows in self._rows_scheduled.values() for _, s in rows if s is not None]
        self.per_step_schedule = "step" in units

    def update_schedule(self, epoch: int, step: int) -> None:
        from droplab.train.schedules import apply_schedules

        apply_schedules(self._scheduled, epoch, step)
        # Each member's rate as the DropoutScheduler of its run alone sets it: the same Python
        # float (a float64 buffer holds it exactly), written into the buffers by train_step.
        self._scheduled_rates = {
            name: torch.tensor(
                [p if s is None else s.rate(p, step if s.unit == "step" else epoch) for p, s in rows],
                dtype=torch.float64,
            )
            for name, rows in self._rows_scheduled.items()
        }

    def select_rows(self, index: torch.Tensor) -> None:
        rows = index.tolist()
        self._rows_scheduled = {n: [r[i] for i in rows] for n, r in self._rows_scheduled.items()}
        self._scheduled_rates = {n: t[index.cpu()] for n, t in self._scheduled_rates.items()}

    def init_params(self, members):
        return self._params, self._buffers

    def unit_dims(self, name: str, tensor: torch.Tensor) -> tuple[int, ...]:
        if self._has_transpose:
            raise Unstackable("max-norm on a ConvTranspose layer in a population")
        return tuple(range(2, tensor.dim()))

    def activation_width(self, x: torch.Tensor) -> int:
        """The most values any submodule outputs per example (and the input's), measured once.

        One example (member 0's first, with per-member inputs) through the template in eval
        mode, with forward hooks; outputs of functions called between modules (an ``F.relu``)
        are as wide as the module output they act on.
        """
        if self._width is None:
            sample = (x[0] if self.per_member_inputs else x)[:1]
            widest = [sample[0].numel()]

            def hook(_mod, _inp, out):
                for t in out if isinstance(out, (tuple, list)) else (out,):
                    if isinstance(t, torch.Tensor) and t.dim():
                        widest.append(t[0].numel())

            handles = [m.register_forward_hook(hook) for m in self.template.modules()]
            self.template.eval()
            try:
                with torch.no_grad(), torch.random.fork_rng(devices=[]):
                    self.template(sample.to(next(self.template.parameters()).device))
            except Exception:  # a model that needs more than its input: no chunking
                widest = [0]
            finally:
                for h in handles:
                    h.remove()
                self.template.train()
            self._width = max(widest)
        return self._width

    def _functions(self):
        if self._grad_fn is None:
            from torch.func import functional_call, grad_and_value, vmap

            template = self.template

            def loss(p, b, x, y, task):
                out = functional_call(template, (p, b), (x,))
                if task == "classification":
                    return F.cross_entropy(out, y)
                if task == "gaussian":
                    return gaussian_nll(out, y).mean()
                if task == "binary":
                    return F.binary_cross_entropy_with_logits(out, y)
                return F.mse_loss(out, y)

            def grad_cls(p, b, x, y):
                return grad_and_value(loss)(p, b, x, y, "classification")

            def grad_reg(p, b, x, y):
                return grad_and_value(loss)(p, b, x, y, "regression")

            def grad_gauss(p, b, x, y):
                return grad_and_value(loss)(p, b, x, y, "gaussian")

            def grad_binary(p, b, x, y):
                return grad_and_value(loss)(p, b, x, y, "binary")

            grads = {"classification": grad_cls, "regression": grad_reg, "gaussian": grad_gauss,
                     "binary": grad_binary}
            # Images may come with the member axis second (x_dim 1, see train_step).
            self._grad_fn = {
                (task, x_dim): vmap(fn, in_dims=(0, 0, x_dim, 0), randomness="different")
                for task, fn in grads.items() for x_dim in (0, 1)
            }
            self._pred_fn = {
                shared: vmap(
                    lambda p, b, x: functional_call(template, (p, b), (x,)),
                    in_dims=(0, 0, None if shared else 0),
                    randomness="different",
                )
                for shared in (True, False)
            }
        return self._grad_fn, self._pred_fn

    def train_step(self, P, buffers, x, y, u, task):
        grad_fn, _ = self._functions()
        self.template.train()
        for name, rates in self._scheduled_rates.items():
            # In place: the population's buffers then hold the rates of the last step, which
            # evaluation and a stopped member's frozen weights read (as a run alone keeps them).
            buffers[name].copy_(rates)
        x_dim = 0
        if self.channels_last and x.dim() == 5:
            # (K, B, C, H, W) -> the same values laid out (B, H, W, K, C) and passed with the
            # member axis at dim 1: vmap's grouped convolution then reads its (B, K*C, H, W)
            # input as a channels-last view instead of a permuted copy, and oneDNN's
            # channels-last grouped kernels are faster (see benchmarks/user_model_sweep.py).
            x = x.permute(1, 3, 4, 0, 2).contiguous().permute(0, 3, 4, 1, 2)
            x_dim = 1
        grads, losses = grad_fn[task, x_dim](P, buffers, x, y)
        # A gradient may come in another memory layout than its parameter (a convolution's
        # weight gradient channels-last); the population's fused optimizers (Adam, SGD) then
        # step the wrong elements (tests/sweep/test_module_layout.py), so give it the parameter's.
        grads = {n: g if g.is_contiguous() else g.contiguous() for n, g in grads.items()}
        return losses.detach(), grads

    @torch.no_grad()
    def predict(self, P, buffers, x):
        _, pred_fn = self._functions()
        self.template.eval()
        try:
            return pred_fn[not self.per_member_inputs](P, buffers, x)
        finally:
            self.template.train()


def _member_schedules(modules: Sequence[nn.Module]) -> tuple[list, dict[str, list]]:
    """The scheduled layers of stacked ``modules`` (one per member, built SpecModels).

    Returns ``(shared, per_member)``: ``shared`` the ``(layer, base rate, schedule)`` targets of
    the template whose layer has no ``rate`` buffer (all members must agree on them);
    ``per_member`` ``{buffer name: [(base rate, schedule or None) per member]}`` for scheduled
    layers with a rate buffer (:func:`droplab.nn.rates_as_buffers`).

    Raises:
        Unstackable: members schedule a layer without a rate buffer differently.
    """
    from droplab.train.schedules import scheduled_layers

    shared: list = []
    per_member: dict[str, list] = {}
    for k, mod in enumerate(modules):
        names = {id(m): n for n, m in mod.named_modules()}
        own = []
        for layer, p, schedule in scheduled_layers(mod):
            name = names[id(layer)]
            if "rate" in layer._buffers:
                buffer = f"{name}.rate" if name else "rate"
                per_member.setdefault(buffer, [None] * len(modules))[k] = (p, schedule)
            else:
                own.append((name, p, schedule))
                if k == 0:
                    shared.append((layer, p, schedule))
        if k == 0:
            first = own
        elif own != first:
            raise Unstackable("the members schedule the rate of a layer without a per-member rate differently")
    for name, rows in per_member.items():
        # A member whose own model leaves this layer unscheduled keeps its built rate.
        for k, row in enumerate(rows):
            if row is None:
                rows[k] = (float(dict(modules[k].named_buffers())[name]), None)
    return shared, per_member


def module_signature(module: nn.Module) -> tuple:
    """A hashable description of a module's structure: types, reprs, parameter/buffer shapes.

    Two modules with equal signatures can be stacked into one population; dropout rates held
    in ``rate`` buffers (:func:`droplab.nn.rates_as_buffers`) are data, not structure.
    """
    from droplab.nn import structure_repr

    mods = tuple((name, type(m).__name__, structure_repr(m)) for name, m in module.named_modules())
    params = tuple((n, tuple(p.shape), str(p.dtype), p.requires_grad) for n, p in module.named_parameters())
    bufs = tuple((n, tuple(b.shape), str(b.dtype)) for n, b in module.named_buffers())
    return (mods, params, bufs)
