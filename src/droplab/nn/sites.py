"""Where a dropout layer can go in any model, and putting droplab layers there.

:func:`dropout_sites` reads a model's module tree and names the places a dropout layer fits;
:func:`insert_dropout` puts droplab layers at some of them. Together they give a user's own
model what droplab's builders have: dropout placement as a choice (a sweep axis), not as code.

Naming rule (stable for a given model class: names come from ``named_modules`` paths):

* ``"after:<path>"`` -- after the output of the module at ``<path>``, for an activation module
  (``nn.ReLU``, ``nn.GELU``, ``nn.SiLU``, ``nn.Tanh`` ...; kind ``"activation"``) and for a
  residual or repeated block: a child of an ``nn.Sequential`` / ``nn.ModuleList`` that has
  children of its own and a sibling of the same class (a ResNet stage's ``BasicBlock``, a
  transformer's encoder layers; kind ``"block"``), i.e. between consecutive blocks.
* ``"before:<path>"`` -- on the input of the head, the model's last ``nn.Linear`` in
  registration order (the classifier or regression head; kind ``"head"``).
* ``"at:<path>"`` -- a dropout layer the model already has (droplab's, or torch's
  ``nn.Dropout`` family; kind ``"dropout"``): :func:`insert_dropout` replaces it, so the rates
  of a model written with dropout are set by name too.

The layer is attached with a forward hook (``"after"``) or pre-hook (``"before"``) and registered
as a child of the site's module, named ``dropout_after`` / ``dropout_before``: parameter names
and ``state_dict`` keys of the model do not change (pretrained weights still load), ``.train()``
and ``.eval()`` reach the layer, and :func:`copy.deepcopy` and pickling keep it working. A
module called more than once in ``forward`` (torchvision's ``BasicBlock`` calls ``self.relu``
twice) gets dropout after every call. Activations applied as functions (``F.relu``) are not
modules and have no site.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from droplab._checks import did_you_mean
from droplab.errors import ConfigError
from droplab.nn._base import StochasticLayer
from droplab.nn.convert import CONVERTED_TYPES
from droplab.nn.dropout import Dropout

__all__ = ["dropout_sites", "insert_dropout", "ACTIVATIONS"]

#: Module types whose output is an activation site.
ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Tanh, nn.Sigmoid,
    nn.Softplus, nn.GLU,
)

_AFTER, _BEFORE = "dropout_after", "dropout_before"


def _is_inserted(path: str) -> bool:
    last = path.rsplit(".", 1)[-1]
    return last in (_AFTER, _BEFORE)


def _is_dropout(module: nn.Module) -> bool:
    """A dropout layer that can be replaced: torch's, or droplab's that wraps no module."""
    if type(module) in CONVERTED_TYPES:
        return True
    return isinstance(module, StochasticLayer) and not any(True for _ in module.children())


def _walk(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``named_modules`` without what :func:`insert_dropout` added or droplab layers wrap."""
    out = []
    for path, module in model.named_modules():
        if path and any(_is_inserted(p) for p in _prefixes(path)):
            continue
        if path and any(isinstance(a, StochasticLayer) for _, a in _ancestors(model, path)):
            continue  # inside DropConnect, WeightDrop ...: the wrapped module is not a site
        out.append((path, module))
    return out


def _prefixes(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def dropout_sites(model: nn.Module) -> dict[str, str]:
    """The places a dropout layer can go in ``model``: site name -> kind.

    See the module docstring for the naming rule and what counts as an activation, a block
    and the head. Sites come in module order; the head's ``"before:"`` site comes last.

    Args:
        model: any ``nn.Module``.

    Returns:
        An ordered dict ``{site: kind}``, kind one of ``"activation"``, ``"block"``,
        ``"head"``, ``"dropout"``. Empty if the model has none (say, a single ``nn.Linear`` at the root).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> dropout_sites(net)
        {'after:1': 'activation', 'before:2': 'head'}
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"dropout_sites expects an nn.Module, got {type(model).__name__}")
    modules = _walk(model)
    sites: dict[str, str] = {}
    for path, module in modules:
        if not path:
            continue
        if isinstance(module, ACTIVATIONS):
            sites[f"after:{path}"] = "activation"
        elif _is_dropout(module):
            sites[f"at:{path}"] = "dropout"
    for path, container in modules:
        if not isinstance(container, (nn.Sequential, nn.ModuleList)):
            continue
        children = [(n, c) for n, c in container.named_children() if not _is_dropout(c)]
        for name, child in children:
            if isinstance(child, ACTIVATIONS):
                continue
            composite = any(n not in (_AFTER, _BEFORE) for n, _ in child.named_children())
            twins = sum(type(c) is type(child) for _, c in children) > 1
            if composite and twins:
                sites[f"after:{path}.{name}" if path else f"after:{name}"] = "block"
    heads = [path for path, m in modules if path and isinstance(m, nn.Linear)]
    if heads:
        sites[f"before:{heads[-1]}"] = "head"
    # Blocks were found in a second pass; put every site back in module order, head last.
    order = {path: i for i, (path, _) in enumerate(modules)}
    return dict(sorted(sites.items(), key=lambda kv: (kv[1] == "head", order[kv[0].split(":", 1)[1]])))


def _ancestors(model: nn.Module, path: str) -> list[tuple[str, nn.Module]]:
    return [(p, model.get_submodule(p)) for p in _prefixes(path)[:-1]]


def _after_hook(module: nn.Module, args: Any, output: Any) -> Any:
    # A module-level function (not a closure): deepcopy and pickle find the layer by name.
    layer = getattr(module, _AFTER)
    if isinstance(output, tuple):  # e.g. a block returning (hidden, attention weights)
        return (layer(output[0]), *output[1:])
    return layer(output)


def _before_hook(module: nn.Module, args: tuple) -> tuple:
    layer = getattr(module, _BEFORE)
    return (layer(args[0]), *args[1:])


def insert_dropout(
    model: nn.Module,
    rates: Mapping[str, float],
    *,
    layer: Callable[[float], nn.Module] = Dropout,
) -> nn.Module:
    """Put droplab dropout layers at named sites of ``model``, in place; return ``model``.

    Every site in ``rates`` gets ``layer(rate)`` (a rate of 0 still inserts the layer, the
    identity, so that models of a placement sweep keep one structure). Inserting at a site that
    already holds a layer replaces it; an ``"at:"`` site is the model's own dropout layer,
    replaced by ``layer(rate)``. See the module docstring for how the layer is attached
    (hooks; ``state_dict`` keys unchanged) and :func:`dropout_sites` for the names.

    Dropout: Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov, JMLR 15, 2014.

    Args:
        model: any ``nn.Module``.
        rates: site name -> drop probability in [0, 1), e.g.
            ``{"after:layer1.0": 0.1, "before:fc": 0.3}``.
        layer: the factory ``rate -> nn.Module``. Default :class:`droplab.nn.Dropout`;
            e.g. ``droplab.nn.SpatialDropout`` for feature maps.

    Returns:
        ``model``.

    Raises:
        ConfigError: a site is not one of ``dropout_sites(model)`` (the message lists them),
            or a rate is not in [0, 1).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> net = insert_dropout(net, {"after:1": 0.2, "before:2": 0.1})
    """
    if not isinstance(rates, Mapping):
        raise ConfigError(f"rates must be a mapping site -> rate, got {type(rates).__name__}")
    sites = dropout_sites(model)
    for site in rates:
        if site not in sites:
            listed = ", ".join(sites) or "none"
            raise ConfigError(
                f"unknown dropout site {site!r}{did_you_mean(str(site), sites)}; "
                f"sites of this model: {listed}"
            )
    built = {site: layer(rate) for site, rate in rates.items()}  # validates every rate first
    for site, new in built.items():
        where, path = site.split(":", 1)
        if where == "at":
            parent, _, name = path.rpartition(".")
            new.train(model.get_submodule(path).training)
            setattr(model.get_submodule(parent), name, new)
            continue
        target = model.get_submodule(path)
        attr = _AFTER if where == "after" else _BEFORE
        had = hasattr(target, attr)
        target.add_module(attr, new)
        if not had:
            if where == "after":
                target.register_forward_hook(_after_hook)
            else:
                target.register_forward_pre_hook(_before_hook)
    return model
