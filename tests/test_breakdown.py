"""The order-pair breakdown: which queries only temporal order can decide, and how they fared."""

from __future__ import annotations

import numpy as np
import pytest

from fsarbench.breakdown import order_pair_breakdown, order_twins
from fsarbench.data.episodes import EpisodeSet, EpisodeSpec

NAMES = (
    "grow, then move up, then shrink",  # 0 and 2 are twins
    "rotate cw, then move left, then grow",  # 1 and 3 are twins
    "shrink, then grow, then move up",
    "move left, then rotate cw, then grow",
    "move down, then rotate ccw, then shrink",  # no twin among these names
)


def episodes(classes, query_labels):
    classes = np.asarray(classes, dtype=np.int32)
    query_labels = np.asarray(query_labels, dtype=np.int64)
    n_episodes, n_way = classes.shape
    return EpisodeSet(
        benchmark="synth",
        split="test",
        protocol={},
        spec=EpisodeSpec(n_way, 1, 1, n_episodes, 0),
        video_ids=(),
        class_names=NAMES,
        available_hash="",
        classes=classes,
        support=np.zeros((n_episodes, n_way), np.int32),
        support_labels=np.tile(np.arange(n_way), (n_episodes, 1)),
        query=np.zeros_like(query_labels, dtype=np.int32),
        query_labels=query_labels,
    )


def test_twins_are_the_same_primitives_in_another_order():
    assert order_twins(NAMES).tolist() == [2, 3, 0, 1, -1]
    assert (order_twins(["a, then b", "c, then d"]) == -1).all()


def test_breakdown_counts_and_accuracies():
    # Episode 0: classes 0, 2, 4 (0 and 2 twins). Episode 1: classes 0, 1, 4 (no twins).
    sets = episodes([[0, 2, 4], [0, 1, 4]], [[0, 1, 2], [0, 1, 2]])
    predictions = np.array([[1, 1, 2], [0, 2, 2]])  # ep0: query 0 took its twin
    result = order_pair_breakdown(sets, predictions)
    pairs, others = result["order_pairs"], result["no_twin_in_episode"]
    assert pairs["queries"] == 2 and others["queries"] == 4
    assert pairs["acc"] == pytest.approx(50.0)  # the twin query 1 right, query 0 wrong
    assert pairs["twin_predicted"] == pytest.approx(50.0)
    assert others["acc"] == pytest.approx(75.0)  # 2, 0, 2 right; 1 predicted as 2
    assert pairs["acc_ci95"] == pytest.approx(100 * 1.96 * 0.5 / np.sqrt(2))


def test_no_breakdown_without_twins():
    sets = episodes([[4, 4]], [[0, 1]])
    sets = EpisodeSet(**{**sets.__dict__, "class_names": ("a", "b", "c", "d", "e")})
    assert order_pair_breakdown(sets, np.array([[0, 1]])) == {}
