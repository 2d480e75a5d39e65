"""The regression gate: current results against a committed baseline, on the same episodes.

A baseline file holds, for every run it covers, the run's identity (method, backbone,
training, benchmark, way, shot, seed), its protocol version and episode-set hash, and its
per-episode accuracies, so that a later run can be tested against it episode by episode
(``fsarbench.compare``). A method fails the gate only when it is worse by more than the noise
allows: a paired t-test below ``alpha`` *and* a drop of at least ``min_effect`` points. A run
the baseline has and the results lack fails too (a method that stops running is a regression
the leaderboard would hide).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fsarbench import __version__
from fsarbench.compare import PairedDifference, paired_runs, pooled_difference
from fsarbench.errors import FsarbenchError
from fsarbench.fileio import atomic_write_text
from fsarbench.results import RunRecord

BASELINE_SCHEMA = 1
ROW_KEYS = ("method", "backbone", "training", "benchmark", "n_way", "k_shot")
# What a baseline keeps of each record: identity, protocol, episodes.
KEPT_FIELDS = (
    *ROW_KEYS,
    "protocol_name",
    "protocol_version",
    "queries_per_class",
    "seed",
    "n_episodes",
    "episode_set_hash",
    "acc_mean",
    "acc_ci95",
    "episode_accuracies",
)
DEFAULT_ALPHA = 0.01
DEFAULT_MIN_EFFECT = 1.0  # accuracy points


def write_baseline(records: list[RunRecord], path: Path, git_commit: str | None) -> None:
    if not records:
        raise FsarbenchError("no result records to make a baseline of", "run the suite first")
    runs = [{name: getattr(r, name) for name in KEPT_FIELDS} for r in records]
    runs.sort(key=lambda run: tuple(str(run[k]) for k in (*ROW_KEYS, "seed")))
    header = dict(
        schema_version=BASELINE_SCHEMA, fsarbench_version=__version__, git_commit=git_commit
    )
    # one run per line: a reviewable diff when a baseline is updated
    lines = ",\n".join(json.dumps(run) for run in runs)
    text = json.dumps(header)[:-1] + f', "runs": [\n{lines}\n]}}\n'
    atomic_write_text(path, text)


def load_baseline(path: Path) -> list[RunRecord]:
    """The baseline's runs as partial records (the fields a comparison needs)."""
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        raise FsarbenchError(
            f"baseline {path} does not exist",
            "write one from trusted results with `fsarbench check --write-baseline FILE`",
        ) from None
    except (OSError, json.JSONDecodeError) as error:
        raise FsarbenchError(f"baseline {path} is not readable JSON ({error})") from None
    if not isinstance(payload, dict) or payload.get("schema_version") != BASELINE_SCHEMA:
        raise FsarbenchError(
            f"{path} is not an fsarbench baseline of schema {BASELINE_SCHEMA}",
            "write it again with `fsarbench check --write-baseline FILE`",
        )
    runs = []
    for index, run in enumerate(payload.get("runs", [])):
        missing = [name for name in KEPT_FIELDS if name not in run]
        if missing:
            raise FsarbenchError(
                f"{path}: run {index} lacks {', '.join(missing)}",
                "write the baseline again with `fsarbench check --write-baseline FILE`",
            )
        runs.append(_partial_record(run))
    return runs


def _partial_record(run: dict) -> RunRecord:
    filler = dict.fromkeys(
        (
            "method_config",
            "split",
            "protocol",
            "backbone_weights_hash",
            "checkpoint_hash",
            "weights_file",
            "config_hash",
            "feature_cache",
            "feature_dtype",
            "versions",
            "git_commit",
            "device",
            "wall_time_s",
            "embed_frame_forwards",
            "created",
        )
    )
    return RunRecord(**filler, **{name: run[name] for name in KEPT_FIELDS})


@dataclass(frozen=True)
class GateRow:
    method: str
    backbone: str
    training: str
    benchmark: str
    n_way: int
    k_shot: int
    seeds: str  # the seeds compared, or those missing
    expected: float | None  # baseline accuracy, percent (mean over the compared seeds)
    actual: float | None
    difference: float | None  # actual - expected, points
    ci95: float | None
    p_value: float | None
    status: str  # ok | improved | REGRESSION | MISSING | FAILED | new

    @property
    def failed(self) -> bool:
        return self.status in ("REGRESSION", "MISSING", "FAILED")


def _group(records: list[RunRecord]) -> dict[tuple, list[RunRecord]]:
    groups: dict[tuple, list[RunRecord]] = {}
    for record in records:
        groups.setdefault(tuple(getattr(record, k) for k in ROW_KEYS), []).append(record)
    return groups


def _refuse_other_protocols(expected: list[RunRecord], actual: list[RunRecord]) -> None:
    for old in expected:
        for new in actual:
            if (old.benchmark, old.n_way, old.k_shot, old.seed) != (
                new.benchmark,
                new.n_way,
                new.k_shot,
                new.seed,
            ):
                continue
            if (old.protocol_name, old.protocol_version) != (
                new.protocol_name,
                new.protocol_version,
            ):
                raise FsarbenchError(
                    f"{new.method} on {new.benchmark} {new.k_shot}-shot seed {new.seed}: the "
                    f"results use protocol {new.protocol_name} v{new.protocol_version}, the "
                    f"baseline {old.protocol_name} v{old.protocol_version}; results under "
                    "different protocols cannot be compared",
                    "write a new baseline under the current protocol "
                    "(`fsarbench check --write-baseline FILE`) from trusted results",
                )
            if (old.queries_per_class, old.n_episodes) != (new.queries_per_class, new.n_episodes):
                raise FsarbenchError(
                    f"{new.method} on {new.benchmark} {new.k_shot}-shot seed {new.seed}: "
                    f"{new.n_episodes} episodes with {new.queries_per_class} queries per class "
                    f"against the baseline's {old.n_episodes} with {old.queries_per_class}",
                    "run the suite the baseline was written from (same --episodes and "
                    "--queries), or write a new baseline",
                )


def check_results(
    current: list[RunRecord],
    baseline: list[RunRecord],
    alpha: float = DEFAULT_ALPHA,
    min_effect: float = DEFAULT_MIN_EFFECT,
    failures=(),
) -> list[GateRow]:
    """One row per (method, backbone, training, benchmark, way, shot) of the baseline, plus the
    current rows the baseline lacks (status ``new``, which does not fail), plus one ``FAILED``
    row per group with runs that raised (``failures``: ``RunFailure``), which fails."""
    if not 0.0 < alpha < 1.0:
        raise FsarbenchError(f"alpha must be in (0, 1), got {alpha}")
    if min_effect < 0.0:
        raise FsarbenchError(f"the minimum effect must be at least 0 points, got {min_effect}")
    expected_groups, actual_groups = _group(baseline), _group(current)
    rows = []
    for key, expected in sorted(expected_groups.items(), key=lambda item: str(item[0])):
        actual = actual_groups.get(key, [])
        _refuse_other_protocols(expected, actual)
        name = " ".join(str(part) for part in key[:3])
        pairs = paired_runs(actual, expected, f"the results and the baseline for {name}")
        compared = {old.seed for _, old in pairs}
        missing = sorted(r.seed for r in expected if r.seed not in compared)
        if missing:
            rows.append(_row(key, f"missing seed {', '.join(map(str, missing))}", None, "MISSING"))
        if pairs:
            result = pooled_difference(pairs)
            seeds = ",".join(str(new.seed) for new, _ in pairs)
            rows.append(_row(key, seeds, result, _status(result, alpha, min_effect)))
    for key, actual in sorted(actual_groups.items(), key=lambda item: str(item[0])):
        if key not in expected_groups:
            seeds = ",".join(str(r.seed) for r in sorted(actual, key=lambda r: r.seed))
            mean = sum(r.acc_mean for r in actual) / len(actual)
            rows.append(
                GateRow(*key, seeds, None, mean, None, None, None, "new")  # type: ignore[misc]
            )
    failed: dict[tuple, list[int]] = {}
    for failure in failures:
        failed.setdefault(tuple(getattr(failure, k) for k in ROW_KEYS), []).append(failure.seed)
    for key, seeds in sorted(failed.items(), key=lambda item: str(item[0])):
        label = f"seed {', '.join(map(str, sorted(seeds)))} raised"
        rows.append(_row(key, label, None, "FAILED"))
    return rows


def _status(result: PairedDifference, alpha: float, min_effect: float) -> str:
    significant = result.p_value < alpha
    if significant and result.difference <= -min_effect:
        return "REGRESSION"
    if significant and result.difference >= min_effect:
        return "improved"
    return "ok"


def _row(key: tuple, seeds: str, result: PairedDifference | None, status: str) -> GateRow:
    if result is None:
        return GateRow(*key, seeds, None, None, None, None, None, status)  # type: ignore[misc]
    return GateRow(
        *key,  # type: ignore[misc]
        seeds,
        # paired_difference(actual, expected): a is the current run, b the baseline
        result.mean_b,
        result.mean_a,
        result.difference,
        result.ci95,
        result.p_value,
        status,
    )
