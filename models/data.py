"""The data set of the tiny models: scikit-learn's bundled digits (1,797 real 8x8
grey-level images of handwritten digits, UCI; ships with scikit-learn, no download).

* ``image``: ``digits.images / 16`` as float32 ``[N, 1, 8, 8]`` (values in [0, 1]); this
  is exactly what the exported models take as input.
* task 0: the digit (10 classes). task 1 (M3ViT only): parity, ``digit % 2`` (0 even,
  1 odd).
* split: ``train_test_split(test_size=0.2, random_state=0, stratify=digit)`` -> 1,437
  training and 360 test images, the same for every model.
"""

from __future__ import annotations

import numpy as np

__all__ = ["load_split", "TASKS", "SPLIT_SEED"]

SPLIT_SEED = 0
TASKS = ("digit", "parity")


def task_labels(digit: np.ndarray) -> list[np.ndarray]:
    """Labels of every task from the digit: [digit, digit % 2]."""
    return [digit.astype(np.int64), (digit % 2).astype(np.int64)]


def load_split():
    """-> (x_train, y_train, x_test, y_test); y are lists of per-task int64 label arrays."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=SPLIT_SEED, stratify=y)
    return xtr, task_labels(ytr), xte, task_labels(yte)
