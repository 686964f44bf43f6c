"""Population training: many configurations x seeds trained as one vectorized computation.

A *population* is a set of *members* (configuration, seed) that share an architecture. Their
parameters are stacked along a leading member axis ``K`` and every step trains all of them
at once. Members stay independent: each has its own parameters, optimizer state, data order,
dropout masks, learning rate, weight decay, L1/L2 strength and max-norm bound, and its own
early stopping. A member's numbers therefore match the same configuration trained alone to
within seed noise (the tests check it against :class:`droplab.train.Trainer`).

Two engines compute the steps:

* :class:`MLPNet` -- droplab's own MLP specs (``kind="mlp"``, no batch norm, Bernoulli
  dropout ``dropout``/``classic`` at ``input``/``hidden``): explicit batched layers, weights
  ``(K, in, out)`` multiplied with ``torch.baddbmm``, and for ReLU a hand-written backward pass
  (no autograd graph; the ReLU and mask backward is one ``threshold_backward`` per layer).
  Dropout rates are per member: the uniforms behind the masks are drawn once per *seed* and
  each member keeps ``u >= p_member`` (``torch.ge`` written as 1.0/0.0 into the uniforms' own
  memory, then scaled). Members that share a seed therefore share the uniform draws, and their
  masks are nested across rates: common random numbers for paired comparisons. Narrow products
  (an output layer of a few classes) are computed transposed on the CPU, where the batched GEMM
  is slow for them.
* :class:`ModuleNet` -- any ``nn.Module`` (the user's own, or droplab's other architectures):
  ``torch.func.stack_module_state`` + ``functional_call`` + ``vmap(grad_and_value(...),
  randomness="different")``. Batch-norm running statistics are stacked buffers and update per
  member. A module's dropout rate is an attribute of the module, not a tensor, so members of
  one ModuleNet population share the module configuration (dropout rates included) and differ
  in seed and in the per-member training hyper-parameters (lr, weight decay, L1, L2,
  max-norm); configurations with other rates form other populations. Inside a population the
  dropout draws are independent per member ("different" randomness, from a generator seeded
  per population), so for these models the paired comparisons share initialization and data
  order but not the masks. A model that vmap cannot run (``.item()`` in forward,
  data-dependent control flow, in-place updates of captured tensors) raises
  :class:`Unstackable`, and the engine trains it one by one with the Trainer.

Shared by both: each distinct seed owns two ``torch.Generator`` s, one for the data order --
seeded with the seed itself, so the batches are exactly those :class:`~droplab.train.Trainer`
draws with ``TrainConfig(seed=seed)`` -- and one for dropout uniforms. Initialization is
``build_model(..., seed=seed)`` (or the user's build function inside
``torch.random.fork_rng`` with ``torch.manual_seed(seed)``), so members with one seed start
from the same weights. The optimizer is torch's own (``Adam``/``AdamW``/``SGD``/``RMSprop``,
fused where torch supports it, or droplab's ``SGDW``), one instance per run of consecutive
members with equal lr and weight decay, over views of the stacked tensors; learning-rate
schedules come from :func:`droplab.train.optim.build_scheduler`. L1/L2 gradients, max-norm and
gradient clipping are applied per member.

Early stopping reuses :class:`droplab.train.EarlyStopping`, one instance per member, fed that
member's epoch row. A stopped (or diverged) member is frozen: its final weights (the best ones
when ``restore_best``) are kept aside and its rows stop. Its slot keeps being computed until the
whole population ends -- a deliberate trade: removing members would re-pack every stacked
tensor and the optimizers' state mid-run, for a saving only when many members stop early.

Cost: every epoch row carries ``seconds`` = the population's epoch wall time / K, and
``peak_mem_mb`` = the population's stacked parameters and buffers plus the peak growth of the
process's resident memory while it trains (read from ``/proc/self/statm`` after steps and
evaluations, from a baseline taken once freed memory went back to the OS; on CUDA
``torch.cuda.max_memory_allocated``), divided by K.
"""

# Every name the single module population.py exported stays importable from here; the
# private ones (_derive_seed, _loss_and_grad_out) only for the tests that check them.
from droplab.sweep.population.base import Member, Unstackable, _derive_seed  # noqa: F401
from droplab.sweep.population.core import POPULATION_FORMAT, Population, make_population
from droplab.sweep.population.losses import GAUSSIAN_MIN_VAR, _loss_and_grad_out, gaussian_nll  # noqa: F401
from droplab.sweep.population.mlp import MLPNet, mlp_fast_path, mlp_positions  # noqa: F401
from droplab.sweep.population.module import ModuleNet, module_signature  # noqa: F401

__all__ = [
    "gaussian_nll",
    "Member",
    "MLPNet",
    "ModuleNet",
    "Population",
    "Unstackable",
    "mlp_fast_path",
    "make_population",
    "POPULATION_FORMAT",
]
