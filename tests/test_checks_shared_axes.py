"""check_shared_axes (droplab._checks): the type check every shared_axes argument goes through."""

from __future__ import annotations

import pytest

from droplab._checks import check_shared_axes
from droplab.errors import ConfigError


def test_accepts_an_int_or_a_sequence_of_distinct_ints():
    assert check_shared_axes(1) == (1,)
    assert check_shared_axes([0, -1]) == (0, -1)
    assert check_shared_axes(()) == ()


@pytest.mark.parametrize(
    "bad, match",
    [
        ("1", r"shared_axes must be an int or a sequence of ints, got '1'"),
        (1.0, r"shared_axes must be an int or a sequence of ints, got 1.0"),
        ((1, True), r"shared_axes must contain only ints, got True in \(1, True\)"),
        ([2, 2], r"shared_axes must not repeat an axis, got \(2, 2\)"),
    ],
)
def test_rejects_with_a_clear_message(bad, match):
    with pytest.raises(ConfigError, match=match):
        check_shared_axes(bad)
