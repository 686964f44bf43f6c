"""droplab.train.metrics: AUROC, F1, MAE against hand-computed values and scikit-learn."""

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, mean_absolute_error, roc_auc_score

from droplab.errors import ConfigError, DataError
from droplab.train.metrics import auroc, f1, mae, task_loss


def test_auroc_by_hand():
    # positives score 0.35 and 0.8; negatives 0.1 and 0.4: pairs won 0.35>0.1, 0.8>0.1, 0.8>0.4
    assert auroc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])) == 0.75
    # a tie between a positive and a negative counts one half: (1 + 0.5) / 2
    assert auroc(torch.tensor([0.5, 0.5, 0.9]), torch.tensor([0, 1, 1])) == 0.75
    assert auroc(torch.tensor([[3.0], [1.0]]), torch.tensor([1.0, 0.0])) == 1.0
    # ranks only: logits and probabilities give the same area
    logits = torch.tensor([-2.0, 0.3, 1.0, -0.1, 2.5])
    y = torch.tensor([0, 1, 1, 0, 1])
    assert auroc(logits, y) == auroc(torch.sigmoid(logits), y) == 1.0


def test_multiclass_auroc_by_hand():
    # 3 classes; softmax of one-hot-ish logits; class k positives get the highest score for k
    out = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0], [2.0, 0.0, 0.0]])
    assert auroc(out, torch.tensor([0, 1, 2, 0])) == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_sklearn(seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (200,), generator=g)
    s = torch.randn(200, generator=g).round(decimals=1) + y  # rounded: many ties
    assert auroc(s, y) == pytest.approx(roc_auc_score(y.numpy(), s.numpy()), abs=1e-12)
    yk = torch.randint(0, 4, (300,), generator=g)
    logits = torch.randn(300, 4, generator=g) + torch.nn.functional.one_hot(yk, 4)
    probs = torch.softmax(logits.double(), 1).numpy()
    want = roc_auc_score(yk.numpy(), probs, multi_class="ovr", average="macro")
    assert auroc(logits, yk) == pytest.approx(want, abs=1e-12)


def test_f1_by_hand():
    # binary: predicted positive where logit > 0 -> [1, 0, 1, 0]; TP=1, FP=1, FN=1 -> 2/4
    assert f1(torch.tensor([2.0, -1.0, 0.5, -3.0]), torch.tensor([1, 1, 0, 0])) == 0.5
    # multi-class: predictions [0, 1, 1, 2] vs [0, 1, 2, 2]; F1 per class 1, 2/3, 2/3
    out = torch.eye(3)[[0, 1, 1, 2]]
    assert f1(out, torch.tensor([0, 1, 2, 2])) == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    # no positive predicted and none true: 0 (sklearn's zero_division=0)
    assert f1(torch.tensor([-1.0, -1.0]), torch.tensor([0, 0])) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_f1_matches_sklearn(seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (150,), generator=g)
    logit = torch.randn(150, generator=g) + (y - 0.5)
    assert f1(logit, y) == pytest.approx(f1_score(y.numpy(), (logit > 0).long().numpy()), abs=1e-12)
    yk = torch.randint(0, 5, (150,), generator=g)
    out = torch.randn(150, 5, generator=g)
    want = f1_score(yk.numpy(), out.argmax(1).numpy(), average="macro", zero_division=0)
    assert f1(out, yk) == pytest.approx(want, abs=1e-12)


def test_mae_by_hand_and_sklearn():
    assert mae(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.5, 2.0, 3.0])) == 0.5
    assert mae(torch.tensor([[1.0], [3.0]]), torch.tensor([0.0, 0.0])) == 2.0
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    assert mae(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(mean_absolute_error(b, a), abs=1e-12)


def test_metric_errors():
    with pytest.raises(DataError, match="auroc: 3 outputs but 2 targets"):
        auroc(torch.zeros(3), torch.zeros(2))
    with pytest.raises(DataError, match="auroc needs both positive and negative targets"):
        auroc(torch.tensor([0.1, 0.2]), torch.tensor([1, 1]))
    with pytest.raises(DataError, match="auroc: class 2 has no positive or no negative example"):
        auroc(torch.zeros(4, 3), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(DataError, match=r"f1 expects outputs \(N,\), \(N, 1\) or \(N, K\), got shape \(2, 2, 2\)"):
        f1(torch.zeros(2, 2, 2), torch.zeros(2))
    with pytest.raises(DataError, match=r"mae: outputs \(2, 2\) do not match targets \(2,\)"):
        mae(torch.zeros(2, 2), torch.zeros(2))
    with pytest.raises(DataError, match="mae: no examples"):
        mae(torch.zeros(0), torch.zeros(0))


def test_task_loss():
    y = torch.tensor([0.0, 1.0, 1.0, 0.0])
    logit = torch.tensor([[-1.0], [2.0], [0.0], [0.5]])
    want = torch.nn.functional.binary_cross_entropy(torch.sigmoid(logit[:, 0]), y)
    assert torch.allclose(task_loss("binary")(logit, y), want)
    assert task_loss("classification") is torch.nn.functional.cross_entropy
    assert task_loss("regression")(torch.tensor([[1.0], [3.0]]), torch.tensor([0.0, 1.0])) == 2.5
    with pytest.raises(ConfigError, match="task must be one of"):
        task_loss("ranking")


def test_one_logit_binary_model_trains_with_bce():
    """A 1-logit model on 0/1 float labels: inferred binary, trained with BCE, AUROC rises."""
    from droplab.data import infer_task

    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 5, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).float()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    task = infer_task(y, n_outputs=1).task
    assert task == "binary"
    loss_fn = task_loss(task)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        loss = loss_fn(model(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = model(x)
    assert loss.item() < 0.5 * first
    assert auroc(out, y) > 0.97 and f1(out, y) > 0.9
