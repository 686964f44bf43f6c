import math

import pytest
import torch

from droplab import _checks as c
from droplab.errors import ConfigError


@pytest.mark.parametrize("bad", [1.0, 1.2, -0.1, math.nan, "0.5", None, True])
def test_probability_rejects(bad):
    with pytest.raises(ConfigError, match=r"p must be"):
        c.check_probability("p", bad)


def test_probability_message_format():
    with pytest.raises(ConfigError, match=r"^p must be in \[0, 1\), got 1.2$"):
        c.check_probability("p", 1.2)


def test_probability_accepts():
    assert c.check_probability("p", 0) == 0.0
    assert c.check_probability("p", 0.999) == 0.999
    assert c.check_probability("p", 1, allow_one=True) == 1.0


def test_choice_lists_and_hints():
    with pytest.raises(ConfigError, match=r"'inverted', 'classic'.*did you mean 'classic'"):
        c.check_choice("mode", "clasic", ["inverted", "classic"])


def test_keys_did_you_mean():
    with pytest.raises(ConfigError, match=r"unknown key 'epocs'.*did you mean 'epochs'"):
        c.check_keys("[train]", ["epocs"], ["epochs", "seed"])


def test_rank_message():
    with pytest.raises(ConfigError, match=r"expects a 4D input \(N, C, H, W\), got 3D input of shape \(2, 3, 4\)"):
        c.check_rank("DropBlock2d", torch.zeros(2, 3, 4), [4], "(N, C, H, W)")


@pytest.mark.parametrize("fn", [c.check_positive_int, c.check_nonneg_int])
def test_ints(fn):
    with pytest.raises(ConfigError):
        fn("n", 1.5)
    with pytest.raises(ConfigError):
        fn("n", -1)


@pytest.mark.parametrize("bad", [0, 1, "true", None, 1.0])
def test_bool_rejects_non_bools(bad):
    with pytest.raises(ConfigError, match=rf"^flag must be true or false, got {bad!r}$"):
        c.check_bool("flag", bad)
    assert c.check_bool("flag", True) is True and c.check_bool("flag", False) is False


def test_ints_accept_numpy_integers():
    np = pytest.importorskip("numpy")
    assert c.check_positive_int("n", np.int64(3)) == 3
    assert type(c.check_nonneg_int("n", np.int32(0))) is int
    with pytest.raises(ConfigError):
        c.check_positive_int("n", np.float64(3.0))
