"""Statistics over episodes, with the conventions the FSAR literature uses."""

from __future__ import annotations

import math

import numpy as np


def mean_and_ci95(accuracies) -> tuple[float, float]:
    """Mean accuracy and half-width of its 95% interval, both in percent.

    The TRX convention: ``1.96 * std / sqrt(n)`` with the population standard deviation
    (numpy's default, ddof=0) of the per-episode accuracies.
    """
    values = np.asarray(accuracies, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no episodes")
    return 100.0 * float(values.mean()), 100.0 * 1.96 * float(values.std()) / math.sqrt(values.size)
