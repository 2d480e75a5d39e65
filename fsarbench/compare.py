"""Paired comparisons of two methods on the episodes they share.

Every method run under one (benchmark, protocol, way, shot, seed) is tested on the same episode
set: its hash is in every record. Two methods can therefore be compared episode by episode; the
difference on episode i cancels how hard episode i is, which makes the paired test far more
sensitive than comparing two confidence intervals.

The test is a paired t-test on the per-episode accuracy differences (``scipy.stats.ttest_rel``,
two-sided), with the episodes of every seed both methods ran pooled as pairs. The differences
are bounded and take few values, so the test leans on the central limit theorem, which is sound
at the thousands of episodes of the protocol; the interval is the matching t interval of the
mean difference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fsarbench.errors import FsarbenchError
from fsarbench.results import RunRecord, row_method

TEST_NAME = "paired t-test over episodes (scipy.stats.ttest_rel, two-sided), seeds pooled"
# Runs are paired when all of these agree; the episode-set hash must then agree too.
PAIRING_KEYS = (
    "benchmark",
    "protocol_name",
    "protocol_version",
    "n_way",
    "k_shot",
    "queries_per_class",
    "seed",
    "n_episodes",
)


@dataclass(frozen=True)
class PairedDifference:
    """``a - b`` over paired episodes, in accuracy points (percent)."""

    n_pairs: int
    mean_a: float
    mean_b: float
    difference: float
    ci95: float  # half-width of the 95% t interval of the mean difference
    p_value: float  # two-sided; 1.0 when every episode ties


def paired_difference(a, b) -> PairedDifference:
    """Per-episode accuracies ``a [n]`` and ``b [n]`` (fractions, same episodes, same order)."""
    from scipy import stats  # here: the CLI's start-up does not pay for SciPy

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ValueError(
            f"need two equal-length episode series of at least 2, got {a.shape}, {b.shape}"
        )
    differences = a - b
    spread = differences.std(ddof=1)
    # identical outcomes on every episode, or a constant shift (up to float rounding of the
    # accuracies, which are multiples of 1 / queries): the t statistic is undefined
    if np.allclose(differences, differences[0], rtol=0.0, atol=1e-9):
        p_value = 1.0 if abs(differences[0]) <= 1e-9 else 0.0
        half_width = 0.0
    else:
        p_value = float(stats.ttest_rel(a, b).pvalue)
        half_width = float(stats.t.ppf(0.975, a.size - 1)) * spread / math.sqrt(a.size)
    return PairedDifference(
        n_pairs=int(a.size),
        mean_a=100.0 * float(a.mean()),
        mean_b=100.0 * float(b.mean()),
        difference=100.0 * float(differences.mean()),
        ci95=100.0 * half_width,
        p_value=p_value,
    )


def format_p(p_value: float) -> str:
    # below double precision's resolution scipy reports 0, which would read as certainty
    return "< 1e-16" if p_value < 1e-16 else f"{p_value:.2g}"


def pairing_key(record: RunRecord) -> tuple:
    return tuple(getattr(record, key) for key in PAIRING_KEYS)


def paired_runs(
    first: list[RunRecord], second: list[RunRecord], what: str = "the two sides"
) -> list[tuple[RunRecord, RunRecord]]:
    """Runs of ``first`` and ``second`` on the same episode sets, matched by seed (and every
    other protocol field). Refuses runs that should share episodes but do not."""
    by_key = {pairing_key(r): r for r in second}
    pairs = []
    for record in first:
        other = by_key.get(pairing_key(record))
        if other is None:
            continue
        if other.episode_set_hash != record.episode_set_hash:
            raise FsarbenchError(
                f"{what} ran {record.benchmark} {record.k_shot}-shot seed {record.seed} on "
                f"different episode sets ({record.episode_set_hash[:12]} against "
                f"{other.episode_set_hash[:12]}): their episodes cannot be paired",
                "re-run both with the same fsarbench version (the episode sampler changed) "
                "and the same benchmark files",
            )
        pairs.append((record, other))
    return sorted(pairs, key=lambda pair: pair[0].seed)


def pooled_difference(pairs: list[tuple[RunRecord, RunRecord]]) -> PairedDifference:
    a = np.concatenate([np.asarray(x.episode_accuracies) for x, _ in pairs])
    b = np.concatenate([np.asarray(y.episode_accuracies) for _, y in pairs])
    return paired_difference(a, b)


@dataclass(frozen=True)
class MethodSpec:
    """``method[:training]`` on the command line, e.g. ``protonet:none``; the method with its
    variant names a variant's runs (``protonet+temp5``, ``protonet~1a2b3c4d``)."""

    method: str
    training: str | None = None

    @classmethod
    def parse(cls, text: str) -> MethodSpec:
        method, _, training = text.partition(":")
        return cls(method, training or None)

    def matches(self, record: RunRecord) -> bool:
        return row_method(record) == self.method and self.training in (None, record.training)

    def __str__(self) -> str:
        return self.method if self.training is None else f"{self.method}:{self.training}"


@dataclass(frozen=True)
class Comparison:
    benchmark: str
    n_way: int
    k_shot: int
    backbone: str
    training_a: str
    training_b: str
    seeds: tuple[int, ...]
    result: PairedDifference


def compare_methods(
    records: list[RunRecord],
    a: MethodSpec,
    b: MethodSpec,
    benchmarks: list[str] | None = None,
) -> list[Comparison]:
    """``a`` against ``b`` on every (benchmark, way, shot, backbone, training) both ran.

    Without a training on either side, rows with the same training are compared; with one on
    both sides, those two trainings are compared (e.g. ``protonet:none`` against
    ``protonet:pretrain+frozen``)."""
    if benchmarks is not None:
        records = [r for r in records if r.benchmark in benchmarks]
    mine = [r for r in records if a.matches(r)]
    theirs = [r for r in records if b.matches(r)]
    for spec, found in ((a, mine), (b, theirs)):
        if not found:
            known = sorted({f"{r.method}:{r.training}" for r in records})
            raise FsarbenchError(
                f"no result records for {spec}"
                + (f" on {', '.join(benchmarks)}" if benchmarks else ""),
                "records here are for "
                + (", ".join(known) if known else "nothing yet")
                + "; run the method first or pass --results-dir",
            )

    def group(record: RunRecord, cross: bool) -> tuple:
        training = "" if cross else record.training
        return (record.benchmark, record.n_way, record.k_shot, record.backbone, training)

    cross = a.training is not None and b.training is not None
    groups: dict[tuple, tuple[list, list]] = {}
    for record in mine:
        groups.setdefault(group(record, cross), ([], []))[0].append(record)
    for record in theirs:
        groups.setdefault(group(record, cross), ([], []))[1].append(record)
    comparisons = []
    for key, (left, right) in sorted(groups.items()):
        pairs = paired_runs(left, right, f"{a} and {b}")
        if not pairs:
            continue
        comparisons.append(
            Comparison(
                benchmark=key[0],
                n_way=key[1],
                k_shot=key[2],
                backbone=key[3],
                training_a=pairs[0][0].training,
                training_b=pairs[0][1].training,
                seeds=tuple(x.seed for x, _ in pairs),
                result=pooled_difference(pairs),
            )
        )
    if not comparisons:
        raise FsarbenchError(
            f"{a} and {b} share no episode sets (no benchmark, shot, backbone, training and "
            "seed that both ran)",
            "run both on the same benchmark, shots and seeds, or name the trainings to "
            "compare, e.g. protonet:none protonet:pretrain+frozen",
        )
    return comparisons
