"""Shared pieces of the layers' statistical tests: seeded generators, the binomial check, alpha
dropout's affine coefficients (recomputed from the SELU paper, not imported from the code under
test).

Binomial checks use scipy's exact test at ``ALPHA = 1e-4``; moment checks use ``K_SIGMA = 5``
standard errors.
"""

import torch
from scipy.stats import binomtest

ALPHA = 1e-4
K_SIGMA = 5.0
# Klambauer et al. 2017: alpha' = -lambda * alpha of SELU.
ALPHA_PRIME = -1.0507009873554804934193349852946 * 1.6732632423543772848170429916717


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _assert_binomial(k, n, p):
    pvalue = binomtest(int(k), int(n), p).pvalue
    assert pvalue > ALPHA, f"{k}/{n} dropped, expected rate {p}: binomial p-value {pvalue:.2e}"


def _alpha_coeffs(p):
    a = ((1 - p) * (1 + p * ALPHA_PRIME**2)) ** -0.5
    return a, -a * p * ALPHA_PRIME
