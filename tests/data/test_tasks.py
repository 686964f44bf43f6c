"""droplab.data.infer_task: which task, and why; overrides are checked against the targets."""

import numpy as np
import pytest
import torch

from droplab.data import infer_task
from droplab.errors import ConfigError, DataError


@pytest.mark.parametrize(
    "y, n_outputs, task, why",
    [
        (torch.tensor([0.0, 1.0, 1.0, 0.0]), 1, "binary", "0/1 floats and the model has one output"),
        (torch.tensor([0.0, 1.0, 1.0, 0.0]), None, "binary", "0/1 floats: binary classification"),
        (torch.tensor([True, False, True]), None, "binary", "0/1 booleans"),
        (torch.tensor([0, 1, 1, 0]), 1, "binary", "0/1 integers and the model has one output"),
        (torch.tensor([0, 1, 1, 0]), None, "classification", "integer labels 0..1: 2-class"),
        (torch.tensor([0, 1, 1, 0]), 2, "classification", "the model has 2 outputs"),
        (torch.arange(30) % 3, None, "classification", "integer labels 0..2: 3-class"),
        (torch.tensor([0.0, 1.0, 2.0]), 3, "classification", "floats in 0..2 and the model has 3 outputs"),
        (torch.arange(100) % 57, None, "regression", "57 distinct values (more than 20: counts"),
        (torch.tensor([0, 1, 2, 5, 9]), None, "regression", "with gaps (values [0, 1, 2, 5, 9]"),
        (torch.tensor([-1, 0, 1]), None, "regression", "negative values"),
        (torch.tensor([0.5, 1.5, 2.0]), None, "regression", "non-integer float targets"),
        (torch.tensor([0.0, 1.0, 2.0]), None, "regression", "float targets with 3 distinct values"),
        (torch.arange(30) % 3, 1, "regression", "the model has one output and the targets take 3 values"),
        (torch.zeros(5, 2), None, "regression", "2 columns: 2 regression targets"),
        (np.array([0, 2, 1, 2]), None, "classification", "integer labels 0..2"),
        ([0.0, 1.0], 1, "binary", "0/1 floats"),
    ],
)
def test_inferred_task_and_reason(y, n_outputs, task, why):
    got = infer_task(y, n_outputs)
    assert got.task == task
    assert why in got.reason


def test_result_unpacks_as_a_pair():
    task, reason = infer_task(torch.tensor([0.0, 1.0]), 1)
    assert task == "binary" and "BCE" in reason


def test_override_is_returned_when_the_targets_fit():
    assert infer_task(torch.tensor([0.0, 1.0, 2.0]), task="classification") == ("classification", "task='classification' given")
    assert infer_task(torch.tensor([0, 1]), task="regression").task == "regression"
    assert infer_task(torch.tensor([0, 1]), task="binary").task == "binary"


def test_override_that_cannot_train_is_refused():
    with pytest.raises(DataError, match=r"task 'binary' needs 0/1 targets, got values \[0\.0, 1\.0, 2\.0\]"):
        infer_task(torch.tensor([0, 1, 2]), task="binary")
    with pytest.raises(DataError, match="task 'binary' needs a model with one output, got 2"):
        infer_task(torch.tensor([0, 1]), 2, task="binary")
    with pytest.raises(DataError, match="task 'classification' needs integer labels 0..K-1"):
        infer_task(torch.tensor([0.5, 1.0]), task="classification")
    with pytest.raises(DataError, match="label 4 needs at least 5 outputs; the model has 3"):
        infer_task(torch.tensor([0, 4]), 3, task="classification")
    with pytest.raises(DataError, match=r"class labels must be 1-D, got shape \(2, 2\)"):
        infer_task(torch.zeros(2, 2, dtype=torch.long), task="classification")


def test_bad_arguments_and_targets():
    with pytest.raises(ConfigError, match="task must be one of 'classification', 'binary', 'regression'; got 'clasification'"):
        infer_task(torch.tensor([0, 1]), task="clasification")
    with pytest.raises(ConfigError, match="n_outputs must be a positive integer, got 0"):
        infer_task(torch.tensor([0, 1]), 0)
    with pytest.raises(DataError, match="targets are empty"):
        infer_task(torch.tensor([]))
    with pytest.raises(DataError, match="targets contain 1 NaN and 1 infinite values"):
        infer_task(torch.tensor([0.0, float("nan"), float("inf")]))
    with pytest.raises(DataError, match="targets must be numeric, got dtype <U1"):
        infer_task(np.array(["a", "b"]))
