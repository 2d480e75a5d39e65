"""Accuracy on the queries that only order can decide, for benchmarks that know which classes
differ only in the order of their sub-actions (``synth``).

In ``synth`` every class has an *order twin*: the class made of the same motion primitives in
another order. A query whose twin class is also in its episode can only be told apart by
temporal order, which mean-pooled ProtoNet cannot see and alignment methods claim to handle.
The breakdown splits the test queries of a run into those (``order_pairs``) and the rest
(``no_twin_in_episode``), with the accuracy of each and, for the first, how often the twin was
predicted instead.
"""

from __future__ import annotations

import numpy as np

from fsarbench.data.episodes import EpisodeSet

SEPARATOR = ", then "  # synth's class names: "grow, then move up, then shrink"


def order_twins(class_names: tuple[str, ...] | list[str]) -> np.ndarray:
    """Index of each class's order twin (same primitives, other order), or -1 when it has none.

    Classes are named by their primitives in order; two names with the same set of primitives
    and different orders are twins."""
    by_primitives: dict[frozenset, list[int]] = {}
    for index, name in enumerate(class_names):
        by_primitives.setdefault(frozenset(name.split(SEPARATOR)), []).append(index)
    twins = np.full(len(class_names), -1, dtype=np.int64)
    for members in by_primitives.values():
        if len(members) == 2:
            first, second = members
            twins[first], twins[second] = second, first
    return twins


def _share(hits: np.ndarray) -> tuple[float, float]:
    """Percent of ``hits`` and its 95% interval (1.96 x population std / sqrt(n))."""
    if hits.size == 0:
        return float("nan"), float("nan")
    hits = hits.astype(np.float64)
    return 100.0 * hits.mean(), 100.0 * 1.96 * hits.std() / np.sqrt(hits.size)


def order_pair_breakdown(episodes: EpisodeSet, predictions: np.ndarray) -> dict:
    """Per-subset query accuracy of one run: ``predictions [E, Q]`` are episode-local labels.

    Empty when the benchmark's classes have no order twins (every real benchmark)."""
    twins = order_twins(episodes.class_names)
    if (twins < 0).all():
        return {}
    true_class = np.take_along_axis(episodes.classes, episodes.query_labels, axis=1)  # [E, Q]
    twin_class = twins[true_class]  # [E, Q]
    # Episode-local label of the twin, or -1 where the twin is not among the episode's classes.
    in_episode = episodes.classes[:, None, :] == twin_class[:, :, None]  # [E, Q, N]
    twin_label = np.where(in_episode.any(axis=-1), in_episode.argmax(axis=-1), -1)  # [E, Q]
    correct = predictions == episodes.query_labels  # [E, Q]
    paired = twin_label >= 0
    pair_acc, pair_ci95 = _share(correct[paired])
    twin_rate, twin_ci95 = _share((predictions == twin_label)[paired])
    other_acc, other_ci95 = _share(correct[~paired])
    return {
        "order_pairs": {
            "queries": int(paired.sum()),
            "acc": pair_acc,
            "acc_ci95": pair_ci95,
            "twin_predicted": twin_rate,
            "twin_predicted_ci95": twin_ci95,
        },
        "no_twin_in_episode": {
            "queries": int((~paired).sum()),
            "acc": other_acc,
            "acc_ci95": other_ci95,
        },
    }
