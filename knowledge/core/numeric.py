"""Small numeric helpers: softmax and percentiles (numpy's linear interpolation).

>>> [round(p, 3) for p in softmax([0.0, 0.0])]
[0.5, 0.5]
>>> percentile([1, 2, 3, 4], 50)
2.5
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from knowledge.core.errors import ValidationError


def softmax(values: Sequence[float], temperature: float = 1.0) -> list[float]:
    """Probabilities from scores (numerically stable); a lower temperature makes them sharper.

    >>> [round(p, 3) for p in softmax([0.80, 0.78], 0.02)]
    [0.731, 0.269]
    >>> softmax([1.0], 0.05), softmax([])
    ([1.0], [])
    """
    if not values:
        return []
    top = max(values)
    weights = [math.exp((v - top) / temperature) for v in values]
    total = sum(weights)
    return [w / total for w in weights]


def sigmoid(x: float) -> float:
    """The logistic function, clipped so that it never overflows.

    >>> sigmoid(0.0), round(sigmoid(100.0), 6)
    (0.5, 1.0)
    """
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, x))))


def percentile(values: Sequence[float], q: float, digits: int | None = 6) -> float | None:
    """The q-th percentile with linear interpolation (``numpy.percentile``); ``None`` when empty.

    >>> percentile([10, 20, 30, 40, 50], 95)
    48.0
    >>> percentile([], 50) is None
    True
    """
    if not len(values):
        return None
    if not 0 <= q <= 100:
        raise ValidationError(f"percentile q must be within 0..100, got {q}")
    value = float(np.percentile(np.asarray(values, dtype=float), q))
    return round(value, digits) if digits is not None else value
