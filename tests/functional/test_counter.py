"""Counter-based dropout: definition, statistics, autograd without a stored mask, compilation.

Statistical tests use fixed seeds, so each is deterministic; the thresholds are what a correct
generator passes with high probability (p-value > 1e-4 for binomial and chi-square tests,
k = 5 sigma for correlations), so a failure means a real defect, not bad luck.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from droplab.errors import ConfigError
from droplab.functional import counter as _counter
from droplab.functional.counter import counter_backend, counter_dropout, counter_uniform, draw_seed

N = 1 << 16
SEEDS = (0, 1, 12345, 2**63 - 1)
ALPHA = 1e-4
RATES3, SEEDS3 = torch.tensor([0.1, 0.5, 0.9]), torch.tensor([4, 4, 9])


@pytest.fixture(autouse=True)
def _eager(monkeypatch):
    """Most tests run the eager kernels (bitwise equal to compiled, checked once below)."""
    monkeypatch.setenv("DROPLAB_NO_COMPILE", "1")


def _drops(p: float, seed: int, n: int = N) -> torch.Tensor:
    return counter_dropout(torch.ones(n), p, seed) == 0


def _saved_bytes(fn, x: torch.Tensor) -> int:
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return total


def _pair_table(a: torch.Tensor, b: torch.Tensor) -> list[list[int]]:
    a, b = a.long(), b.long()
    return [[int(((a == i) & (b == j)).sum()) for j in (0, 1)] for i in (0, 1)]


# ---------------------------------------------------------------------------------- definition


@pytest.mark.parametrize("seed", SEEDS)
def test_uniform_values_are_24_bit_grid_in_unit_interval(seed):
    u = counter_uniform(N, seed)
    assert u.dtype == torch.float32 and u.shape == (N,)
    assert 0.0 <= float(u.min()) and float(u.max()) < 1.0
    scaled = u.double() * 2**24
    assert torch.equal(scaled, scaled.round())


@pytest.mark.parametrize("seed", SEEDS)
def test_uniform_chi_square_on_bins(seed):
    counts = torch.bincount((counter_uniform(N, seed) * 64).long(), minlength=64)
    assert stats.chisquare(counts.numpy()).pvalue > ALPHA


def test_uniform_shape_and_offset_are_views_of_one_stream():
    whole = counter_uniform(1000, 7)
    assert torch.equal(counter_uniform((10, 100), 7), whole.reshape(10, 100))
    assert torch.equal(counter_uniform(300, 7, offset=700), whole[700:])
    assert torch.equal(counter_uniform(5, torch.tensor(7)), whole[:5])
    assert counter_uniform((0, 3), 7).shape == (0, 3)


def test_counters_crossing_two_to_the_32_stay_one_stream():
    start = 2**32 - 5
    both = counter_uniform(10, 9, offset=start)
    halves = [counter_uniform(5, 9, offset=start), counter_uniform(5, 9, offset=2**32)]
    assert torch.equal(both, torch.cat(halves))
    # The high counter word changes the keys: elements 2**32 apart do not repeat.
    assert not torch.equal(counter_uniform(64, 9, offset=2**32), counter_uniform(64, 9))


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_drop_iff_uniform_below_p_and_kept_scaled(p):
    x = torch.randn(4, 1000, generator=torch.Generator().manual_seed(0))
    y = counter_dropout(x, p, 42)
    drop = counter_uniform(x.shape, 42).double() < p
    assert torch.equal(y == 0, drop | (x == 0))
    scale = torch.tensor(1 / (1 - p), dtype=torch.float32)
    assert torch.equal(y[~drop], x[~drop] * scale)
    assert torch.equal(counter_dropout(x, p, 42, scale=False), x * ~drop)


@pytest.mark.parametrize("seed", SEEDS[:3])
@pytest.mark.parametrize("p", [0.05, 0.5, 0.8])
def test_drop_fraction_binomial(p, seed):
    dropped = int(_drops(p, seed).sum())
    assert stats.binomtest(dropped, N, p).pvalue > ALPHA


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_masks_are_nested_across_rates(seed):
    masks = [_drops(p, seed) for p in (0.1, 0.3, 0.6, 0.9)]
    for low, high in zip(masks, masks[1:]):
        assert bool((low <= high).all())  # dropped at the lower rate => dropped at the higher
        assert int(low.sum()) < int(high.sum())


def test_same_seed_is_bitwise_reproducible_and_layout_free():
    x = torch.randn(64, 48, generator=torch.Generator().manual_seed(1))
    assert torch.equal(counter_dropout(x, 0.4, 3), counter_dropout(x.clone(), 0.4, 3))
    xt = x.t()  # non-contiguous: the mask follows the logical index, not memory
    assert torch.equal(counter_dropout(xt, 0.4, 3), counter_dropout(xt.contiguous(), 0.4, 3))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_mask_does_not_depend_on_dtype(dtype):
    x = torch.ones(4096)
    y = counter_dropout(x.to(dtype), 0.3, 11)
    assert y.dtype == dtype
    assert torch.equal(y == 0, counter_dropout(x, 0.3, 11) == 0)


# ------------------------------------------------------------------------------ independence


@pytest.mark.parametrize("seed", SEEDS[:3])
@pytest.mark.parametrize("lag", [1, 2, 8, 256])
def test_neighbouring_elements_independent(seed, lag):
    d = _drops(0.5, seed, 4 * N).reshape(-1, 2 * lag)  # disjoint pairs (i, i + lag)
    table = _pair_table(d[:, :lag].reshape(-1), d[:, lag:].reshape(-1))
    assert stats.chi2_contingency(table).pvalue > ALPHA


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("p", [0.2, 0.5])
def test_masks_of_neighbouring_seeds_independent(seed, p):
    # Layers and steps get consecutive or drawn seeds; their masks must look unrelated.
    other = (seed + 1) % 2**64
    assert stats.chi2_contingency(_pair_table(_drops(p, seed), _drops(p, other))).pvalue > ALPHA


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_uniforms_of_neighbouring_seeds_and_counter_blocks_independent(seed):
    u = counter_uniform(N, seed)
    others = [
        counter_uniform(N, seed + 1),  # the next layer's or step's seed
        counter_uniform(N, seed, offset=N),  # the next block of the same stream
        counter_uniform(N, seed, offset=2**32),  # counters with another high word
    ]
    for v in others:
        r = torch.corrcoef(torch.stack([u, v]).double())[0, 1]
        assert abs(float(r)) < 5 / math.sqrt(N)  # 5 sigma under independence
        cells = (u * 8).long() * 8 + (v * 8).long()  # 8 x 8 joint histogram
        table = torch.bincount(cells, minlength=64).reshape(8, 8)
        assert stats.chi2_contingency(table.numpy()).pvalue > ALPHA


def test_drawn_seeds_follow_the_generator():
    g = torch.Generator().manual_seed(5)
    seeds = [draw_seed(g) for _ in range(4)]
    assert seeds == [draw_seed(gg) for gg in [torch.Generator().manual_seed(5)] for _ in range(4)]
    assert len(set(seeds)) == 4 and all(0 <= s < 2**63 for s in seeds)
    torch.manual_seed(3)
    first = draw_seed()
    torch.manual_seed(3)
    assert draw_seed() == first
    a, b = _drops(0.5, seeds[0]), _drops(0.5, seeds[1])
    assert stats.chi2_contingency(_pair_table(a, b)).pvalue > ALPHA


# --------------------------------------------------------------------------- threads, autograd


def test_masks_identical_for_one_and_two_threads():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = counter_dropout(torch.ones(3 * N + 5), 0.5, 77)
        torch.set_num_threads(2)
        two = counter_dropout(torch.ones(3 * N + 5), 0.5, 77)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


@pytest.mark.parametrize("p", [0.25, 0.7])
def test_gradients_equal_stored_mask_reference(p):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(32, 100, generator=gen, requires_grad=True)
    g = torch.randn(32, 100, generator=gen)
    y = counter_dropout(x, p, 99)
    (grad,) = torch.autograd.grad(y, x, g)
    keep = (counter_uniform(x.shape, 99).double() >= p).float()
    scale = torch.tensor(1 / (1 - p), dtype=torch.float32)
    x_ref = x.detach().clone().requires_grad_()
    y_ref = x_ref * keep * scale  # the stored-mask formulation
    (grad_ref,) = torch.autograd.grad(y_ref, x_ref, g)
    assert torch.equal(y, y_ref)
    assert torch.equal(grad, grad_ref)
    torch.testing.assert_close(grad, g * keep / (1 - p))


def test_gradcheck_and_double_backward():
    x = torch.randn(6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: counter_dropout(t, 0.4, 5), (x,))
    assert torch.autograd.gradgradcheck(lambda t: counter_dropout(t, 0.4, 5), (x,))


def test_nothing_saved_for_backward():
    x = torch.randn(4096, requires_grad=True)
    assert _saved_bytes(lambda t: counter_dropout(t, 0.5, 1), x) == 0
    rates, seeds = torch.tensor([0.1, 0.5]), torch.tensor([1, 2])
    assert _saved_bytes(lambda t: counter_dropout(t, rates, seeds), x.view(2, -1)) == 0
    assert _saved_bytes(lambda t: F.dropout(t, 0.5), x) >= 4096  # torch keeps a mask


def _huge_path(y: torch.Tensor) -> bool:
    """True when ``y`` lives in a mapping made by _fresh_output (a frombuffer storage)."""
    return not y.untyped_storage().resizable()


@pytest.mark.skipif(not _counter._huge_pages_available(), reason="no transparent huge pages here")
@pytest.mark.parametrize("p", [0.25, 0.7])
def test_large_outputs_in_huge_page_mappings_equal_stored_mask_reference(monkeypatch, p):
    monkeypatch.setattr(_counter, "_HUGE_MIN_BYTES", 4096)  # the real 32 MiB, scaled down
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(8, 1000, generator=gen, requires_grad=True)
    g = torch.randn(8, 1000, generator=gen)
    y = counter_dropout(x, p, 41)
    (grad,) = torch.autograd.grad(y, x, g)
    assert _huge_path(y) and _huge_path(grad)
    keep = (counter_uniform(x.shape, 41).double() >= p).float()
    scale = torch.tensor(1 / (1 - p), dtype=torch.float32)
    assert torch.equal(y, x.detach() * keep * scale)
    assert torch.equal(grad, g * keep * scale)
    assert not _huge_path(counter_dropout(torch.ones(1000), p, 41))  # 4000 bytes: below it
    # the tensor behaves as usual for in-place ops and views
    z = y.detach().clone()
    assert torch.equal(y.detach().mul_(2).view(-1)[:10], 2 * z.view(-1)[:10])


def test_fresh_output_falls_back_to_plain_memory(monkeypatch):
    monkeypatch.setattr(_counter, "_HUGE_MIN_BYTES", 4096)
    monkeypatch.setattr(_counter, "_huge_pages_available", lambda: False)
    assert not _huge_path(counter_dropout(torch.ones(4, 1000), 0.5, 1))
    monkeypatch.setattr(_counter, "_huge_pages_available", lambda: True)

    def refuse(*args, **kwargs):
        raise OSError("madvise refused")

    monkeypatch.setattr(_counter.mmap, "mmap", refuse)
    y = counter_dropout(torch.ones(4, 1000), 0.5, 1)
    assert not _huge_path(y)
    assert torch.equal(y == 0, counter_uniform((4, 1000), 1) < 0.5)


# ------------------------------------------------------------------------------ population


def test_per_member_seeds_count_within_member():
    x = torch.ones(3, 500)
    seeds = torch.tensor([7, 7, 8])
    u = counter_uniform(x.shape, seeds)
    assert torch.equal(u[0], counter_uniform(500, 7)) and torch.equal(u[1], u[0])
    assert torch.equal(u[2], counter_uniform(500, 8))
    y = counter_dropout(x, 0.5, seeds)
    for k, s in enumerate(seeds.tolist()):
        assert torch.equal(y[k], counter_dropout(x[k], 0.5, s))


def test_per_member_rates_share_draws_and_nest():
    rates = torch.tensor([0.2, 0.5, 0.8])
    x = torch.ones(3, 4, 1000)
    drop = counter_dropout(x, rates, torch.tensor([5, 5, 5])) == 0
    assert bool((drop[0] <= drop[1]).all()) and bool((drop[1] <= drop[2]).all())
    for k, p in enumerate(rates.tolist()):
        assert torch.equal(drop[k], counter_dropout(x[k], p, 5) == 0)
        assert stats.binomtest(int(drop[k].sum()), drop[k].numel(), p).pvalue > ALPHA
    # One seed for the whole population: indices run over all of x, rates apply per member.
    whole = counter_uniform(x.shape, 5).double()
    y = counter_dropout(x, rates, 5)
    assert torch.equal(y == 0, whole < rates.double().view(3, 1, 1))


# ------------------------------------------------------------------------------ edge cases


def test_p_zero_returns_input_and_small_inputs_work():
    x = torch.randn(5)
    assert counter_dropout(x, 0.0, 1) is x
    assert counter_dropout(x, torch.zeros(5), torch.arange(5)) is x
    assert counter_dropout(torch.empty(0, 3), 0.5, 1).shape == (0, 3)
    scalar = counter_dropout(torch.tensor(2.0), 0.5, 1)
    assert scalar.shape == () and float(scalar) in (0.0, 4.0)
    near_one = counter_dropout(torch.ones(N), 0.999, 1)
    assert 0 < int((near_one != 0).sum()) < 200  # ~65 kept of 65536


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(p=1.0), r"p must be in \[0, 1\), got 1.0"),
        (dict(p=-0.1), r"p must be in \[0, 1\), got -0.1"),
        (dict(p=torch.tensor([1, 2])), r"p must be a floating-point tensor, got dtype torch.int64"),
        (dict(p=torch.full((2, 2), 0.1)), r"p must be a number, a 0-dim or a 1-D .*shape \(2, 2\)"),
        (dict(p=torch.tensor([0.1, 0.2])), r"p has 2 entries.*\(K=2, \.\.\.\), got shape \(4, 3\)"),
        (dict(seed=-1), r"seed must be an integer in \[0, 2\*\*64\), got -1"),
        (dict(seed=2**64), r"seed must be an integer in \[0, 2\*\*64\), got 1844674407370955161"),
        (dict(seed=True), r"seed must be an integer in \[0, 2\*\*64\), got True"),
        (dict(seed=1.5), r"seed must be an integer in \[0, 2\*\*64\), got 1.5"),
        (dict(seed=torch.tensor([1.0])), r"seed must be an integer tensor, got dtype torch.float"),
        (dict(seed=torch.zeros(2, 2, dtype=torch.long)), r"seed must be an int, a 0-dim or a 1-D"),
        (dict(seed=torch.tensor([], dtype=torch.long)), r"seed must have at least one entry"),
        (dict(seed=torch.tensor([1, 2, 3])), r"seed has 3 entries .* got shape \(4, 3\)"),
        (dict(p=torch.full((4,), 0.1), seed=torch.tensor([1, 2])), r"seed has 2 entries"),
        (dict(scale=1), r"scale must be a bool, got 1"),
        (dict(offset=-3), r"offset must be a non-negative integer, got -3"),
    ],
)
def test_dropout_errors(kwargs, match):
    args = {"p": 0.5, "seed": 1, **kwargs}
    scale_offset = {k: args.pop(k) for k in ("scale", "offset") if k in args}
    with pytest.raises(ConfigError, match=match):
        counter_dropout(torch.ones(4, 3), args["p"], args["seed"], **scale_offset)


def test_input_and_uniform_errors():
    with pytest.raises(ConfigError, match=r"x must be a floating-point tensor, got dtype torch.in"):
        counter_dropout(torch.ones(3, dtype=torch.long), 0.5, 1)
    with pytest.raises(ConfigError, match=r"x must be a floating-point tensor, got list"):
        counter_dropout([1.0], 0.5, 1)
    with pytest.raises(ConfigError, match=r"shape_or_numel entries must be a non-negative .* -2"):
        counter_uniform(-2, 1)
    with pytest.raises(ConfigError, match=r"seed has 2 entries .* got shape \(3,\)"):
        counter_uniform(3, torch.tensor([1, 2]))
    with pytest.raises(ConfigError, match=r"offset must be a non-negative integer, got -1"):
        counter_uniform(3, 1, offset=-1)


# ------------------------------------------------------------------------------ compilation


def test_env_var_forces_eager(monkeypatch):
    assert counter_backend() == "eager"
    monkeypatch.setenv("DROPLAB_NO_COMPILE", "0")
    monkeypatch.setattr(_counter, "_compile_failed", False)
    assert counter_backend() == "compiled"


def test_compile_failure_falls_back_silently(monkeypatch, recwarn, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.delenv("DROPLAB_NO_COMPILE")
    monkeypatch.setattr(_counter, "_compile_failed", False)
    monkeypatch.setattr(_counter, "_compiled", {})
    monkeypatch.setattr(torch, "compile", broken)
    y = counter_dropout(torch.ones(1000), 0.5, 4)
    assert counter_backend() == "eager"
    monkeypatch.setenv("DROPLAB_NO_COMPILE", "1")
    assert torch.equal(y, counter_dropout(torch.ones(1000), 0.5, 4))
    assert len(recwarn) == 0 and capsys.readouterr() == ("", "")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch while compiling
def test_compiled_equals_eager_bitwise_for_any_thread_count(monkeypatch):
    """The one test that compiles (tens of seconds the first time): tails, rows, both variants."""
    gen = torch.Generator().manual_seed(8)
    cases = [
        (torch.randn(_counter._SERIAL_BELOW + 13, generator=gen), 0.3, 12345),  # threaded
        (torch.randn(1003, generator=gen), 0.6, 2**63 - 1),  # single-threaded kernel, odd tail
        # a population: per-member rates and seeds, two members sharing draws
        (torch.randn(3, 337, generator=gen), RATES3, SEEDS3),
    ]
    eager = [counter_dropout(x, p, s) for x, p, s in cases]
    eager_u = counter_uniform(1001, 5, offset=2**31 + 7)
    monkeypatch.delenv("DROPLAB_NO_COMPILE")
    monkeypatch.setattr(_counter, "_compile_failed", False)
    # outputs above 4 KiB go to their own huge-page mappings, the 1003-element one does not
    monkeypatch.setattr(_counter, "_HUGE_MIN_BYTES", 4096)
    before = torch.get_num_threads()
    try:
        for threads in (2, 1):
            torch.set_num_threads(threads)
            for (x, p, s), ref in zip(cases, eager):
                assert torch.equal(counter_dropout(x, p, s), ref)
            assert torch.equal(counter_uniform(1001, 5, offset=2**31 + 7), eager_u)
    finally:
        torch.set_num_threads(before)
    assert counter_backend() == "compiled"  # it compiled rather than silently falling back


@pytest.mark.filterwarnings("ignore::UserWarning")  # dynamo notes the lru_cache it traces through
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_inside_a_users_compiled_function_equals_eager(monkeypatch):
    """torch.compile over user code that calls counter_dropout: traced, no huge-page mapping."""
    monkeypatch.setattr(_counter, "_HUGE_MIN_BYTES", 4096)
    torch._dynamo.reset()

    def f(x):
        return counter_dropout(x * 2, 0.3, 11)

    x = torch.randn(4, 3000, generator=torch.Generator().manual_seed(1), requires_grad=True)
    g = torch.randn(4, 3000, generator=torch.Generator().manual_seed(2))
    ref = f(x)
    (ref_grad,) = torch.autograd.grad(ref, x, g)
    out = torch.compile(f)(x)
    (grad,) = torch.autograd.grad(out, x, g)
    assert torch.equal(out, ref) and torch.equal(grad, ref_grad)


# ---------------------------------------------------------------------------------------- CUDA
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_counter_masks_on_cuda_equal_the_cpu_masks_bitwise(compiled, monkeypatch):
    # The hash is integer arithmetic and the scaling one float32 multiply: a seed gives the same
    # output on any device, with or without compilation (Triton kernels on CUDA).
    monkeypatch.setenv("DROPLAB_NO_COMPILE", "0" if compiled else "1")
    x = torch.randn(1 << 20, generator=torch.Generator().manual_seed(3))
    want = counter_dropout(x, 0.3, 12345)
    xc = x.cuda().requires_grad_()
    got = counter_dropout(xc, 0.3, 12345)
    assert got.device.type == "cuda" and torch.equal(got.detach().cpu(), want)
    got.backward(torch.ones_like(got))
    assert torch.equal(xc.grad.cpu(), (want != 0).float() / 0.7)
    u = counter_uniform((4, 1000), 99)
    assert torch.equal(counter_uniform((4, 1000), 99, device="cuda").cpu(), u)
    rows = torch.randn(3, 4096, generator=torch.Generator().manual_seed(4))
    ref = counter_dropout(rows, RATES3, SEEDS3)
    assert torch.equal(counter_dropout(rows.cuda(), RATES3.cuda(), SEEDS3.cuda()).cpu(), ref)
    if compiled:
        assert counter_backend() == "compiled"
