"""Datasets for droplab experiments, split into train / validation / test tensors.

:func:`load_dataset` is the one entry point; it returns a :class:`Splits`. Sources: MNIST-1D
(generated offline and cached), Fashion-MNIST (idx files; Debian package
``dataset-fashion-mnist``), scikit-learn's bundled sets, CSV / NPZ files and a synthetic sine
regression. The validation split, subsample and noise are seeded; standardization is fitted on
the training split only; the test split is returned untouched.
"""

from droplab.data.config import DataConfig
from droplab.data.datasets import DATASETS, FASHION_MNIST_CLASSES, TASKS, load_dataset
from droplab.data.fashion import read_idx
from droplab.data.splits import Splits

__all__ = ["DataConfig", "DATASETS", "TASKS", "FASHION_MNIST_CLASSES", "Splits", "load_dataset", "read_idx"]
# --- a user's own data in any form, and the task it poses (data/adapters.py, data/tasks.py) ---
from droplab.data.adapters import as_splits  # noqa: E402
from droplab.data.tasks import ALL_TASKS, InferredTask, infer_task  # noqa: E402

__all__ += ["as_splits", "infer_task", "InferredTask", "ALL_TASKS"]
