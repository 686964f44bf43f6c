"""Population training: many configurations x seeds of one architecture trained as one stack.

Each member (a configuration and a seed) keeps its own parameters, optimizer state, data order,
dropout masks, learning rate, weight decay, L1/L2, max-norm and early stopping; their tensors are
stacked along a leading member axis ``K`` and every step trains all of them at once. A member's
numbers match the same configuration trained alone by :class:`droplab.train.Trainer` within seed
noise. Members with one seed share initialization, data order and (in the batched MLP) the
uniforms behind their dropout masks: common random numbers for paired comparisons.

- :mod:`~droplab.sweep.population.mlp` -- :class:`MLPNet`, droplab's MLP specs as explicit
  batched layers, per-member dropout rates; :func:`population_net` picks it or the other engine.
- :mod:`~droplab.sweep.population.module` -- :class:`ModuleNet`, any ``nn.Module`` through
  ``torch.func`` (``vmap`` over ``functional_call``); the rates of droplab's unit, channel and
  alpha dropout layers are per-member buffers (:func:`droplab.nn.rates_as_buffers`), other rates
  are shared.
- :mod:`~droplab.sweep.population.core` -- :class:`Population` (the epoch loop, regularizers,
  compaction of stopped members, checkpoints) and :func:`make_population`.

A model vmap cannot run raises :class:`Unstackable`, and the caller trains it one by one. Design
notes (why masks nest, why stopped members are compacted, how cost is measured): the
"Populations" section of ``docs/architecture.md``.

Example::

    members = [Member(f"p{p}", {}, seed, TrainConfig(), (p,)) for p in (0.1, 0.3) for seed in (0, 1)]
    pop, why = make_population(population_net(spec, (40,), 10, members), members, data, "classification")
    while not pop.done:
        rows = pop.run_epoch()  # {member index: history row}
"""

# Every name the single module population.py exported stays importable from here; the
# private ones (_derive_seed, _loss_and_grad_out) only for the tests that check them.
from droplab.sweep.population.base import MEMBER_FIELDS, Member, Unstackable, _derive_seed  # noqa: F401
from droplab.sweep.population.core import POPULATION_FORMAT, Population, make_population
from droplab.sweep.population.losses import GAUSSIAN_MIN_VAR, _loss_and_grad_out, gaussian_nll  # noqa: F401
from droplab.sweep.population.mlp import MLPNet, mlp_fast_path, mlp_positions, mlp_rates, population_net  # noqa: F401
from droplab.sweep.population.module import ModuleNet, module_signature  # noqa: F401

__all__ = [
    "MEMBER_FIELDS",
    "gaussian_nll",
    "Member",
    "MLPNet",
    "ModuleNet",
    "Population",
    "Unstackable",
    "mlp_fast_path",
    "mlp_rates",
    "population_net",
    "make_population",
    "POPULATION_FORMAT",
]
