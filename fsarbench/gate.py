"""The regression gate: current results against a committed baseline, on the same episodes.

A baseline file holds, for every run it covers, the run's identity (method, backbone,
training, benchmark, way, shot, seed), its protocol version and episode-set hash, and its
per-episode accuracies, so that a later run can be tested against it on the same episodes
(``fsarbench.compare``). It may hold several **training replicates** of each run (``fsarbench
run --replicate R``: the same test episodes, pretraining and training under other seeds).

Two noise models, by what the baseline holds:

- **training replicates** (two or more): the current run is one more draw of the training, so
  it is compared with the replicates' mean accuracy through their spread: ``t = d / (s *
  sqrt(1 + 1/n))`` (``d``: the difference, ``n``: replicates, ``s``: the larger of the row's
  standard deviation over its replicate means and the one pooled over every row of the
  baseline, on the pooled degrees of freedom), a prediction interval for a new replicate.
  This is the model that holds on another machine, where float differences over hundreds of
  training iterations change the weights as the replicates' perturbation does
  (``fsarbench.replicates``).
- **one replicate**: a paired t-test over the episodes. It only allows for the episodes, so
  it holds where training is bit-identical (same machine, same versions).

A method fails the gate only when it is worse by more than the noise allows: ``p`` below
``alpha`` *and* a drop of at least ``min_effect`` points. A run the baseline has and the
results lack fails too (a method that stops running is a regression the leaderboard would
hide).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fsarbench import __version__
from fsarbench.compare import PairedDifference, paired_runs, pooled_difference
from fsarbench.errors import FsarbenchError
from fsarbench.fileio import atomic_write_text
from fsarbench.results import RunRecord, accuracy_problem, row_key

BASELINE_SCHEMA = 2  # 2: training replicates (``replicate``), validated accuracies
READABLE_SCHEMAS = (1, 2)
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
    "replicate",
    "variant",
)
DEFAULT_ALPHA = 0.01
DEFAULT_MIN_EFFECT = 1.0  # accuracy points


def write_baseline(records: list[RunRecord], path: Path, git_commit: str | None) -> None:
    """``records``: every replicate of every run (``load_records(..., replicates=True)``)."""
    if not records:
        raise FsarbenchError("no result records to make a baseline of", "run the suite first")
    replicates_of_run: dict[tuple, set[int]] = {}
    for record in records:
        key = (*row_key(record, ROW_KEYS), record.seed)
        replicates_of_run.setdefault(key, set()).add(record.replicate)
    counts = sorted({len(replicates) for replicates in replicates_of_run.values()})
    if len(counts) > 1 or any(0 not in replicates for replicates in replicates_of_run.values()):
        raise FsarbenchError(
            f"the runs have different sets of training replicates ({', '.join(map(str, counts))} "
            "per run); a baseline needs the same replicates, 0 among them, of every run",
            "run the suite with each --replicate into the same results folder "
            "(tools/gate_suite.sh DIR --write)",
        )
    runs = [{name: getattr(r, name) for name in KEPT_FIELDS} for r in records]
    runs.sort(
        key=lambda run: tuple(str(run[k]) for k in (*ROW_KEYS, "variant", "seed", "replicate"))
    )
    header = dict(
        schema_version=BASELINE_SCHEMA,
        fsarbench_version=__version__,
        git_commit=git_commit,
        replicates=counts[0],
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
        raise FsarbenchError(
            f"baseline {path} is not readable JSON ({error})",
            "restore it from git, or write it again with `fsarbench check --write-baseline "
            "FILE` from trusted results",
        ) from None
    rewrite = "write the baseline again with `fsarbench check --write-baseline FILE`"
    if not isinstance(payload, dict) or payload.get("schema_version") not in READABLE_SCHEMAS:
        raise FsarbenchError(
            f"{path} is not an fsarbench baseline of schema {BASELINE_SCHEMA}", rewrite
        )
    entries = payload.get("runs")
    if not isinstance(entries, list) or not entries:
        raise FsarbenchError(f"baseline {path} holds no runs: it would pass anything", rewrite)
    runs = []
    for index, run in enumerate(entries):
        if not isinstance(run, dict):
            raise FsarbenchError(f"{path}: run {index} is not an object", rewrite)
        # schema 1: one replicate; before variants: the defaults' runs
        run = {"replicate": 0, "variant": "", **run}
        missing = [name for name in KEPT_FIELDS if name not in run]
        if missing:
            raise FsarbenchError(f"{path}: run {index} lacks {', '.join(missing)}", rewrite)
        problem = accuracy_problem(run["episode_accuracies"], run["n_episodes"], run["acc_mean"])
        if problem:
            raise FsarbenchError(f"{path}: run {index} ({run['method']}): {problem}", rewrite)
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
    noise: str = ""  # the noise model: "episodes", or "N replicates"

    @property
    def failed(self) -> bool:
        return self.status in ("REGRESSION", "MISSING", "FAILED")


def _group(records: list[RunRecord]) -> dict[tuple, list[RunRecord]]:
    groups: dict[tuple, list[RunRecord]] = {}
    for record in records:
        groups.setdefault(row_key(record, ROW_KEYS), []).append(record)
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
        raise FsarbenchError(
            f"alpha must be in (0, 1), got {alpha}", "give --alpha between 0 and 1 (default 0.01)"
        )
    if min_effect < 0.0:
        raise FsarbenchError(
            f"the minimum effect must be at least 0 points, got {min_effect}",
            "give --min-effect of 0 points or more (default 1.0)",
        )
    expected_groups, actual_groups = _group(baseline), _group(current)
    rows, compared_rows = [], []
    for key, replicates in sorted(expected_groups.items(), key=lambda item: str(item[0])):
        actual = [r for r in actual_groups.get(key, []) if r.replicate == 0]
        expected = [r for r in replicates if r.replicate == 0]
        _refuse_other_protocols(expected, actual)
        name = " ".join(str(part) for part in key[:3])
        pairs = paired_runs(actual, expected, f"the results and the baseline for {name}")
        compared = {old.seed for _, old in pairs}
        missing = sorted(r.seed for r in expected if r.seed not in compared)
        if missing:
            rows.append(_row(key, f"missing seed {', '.join(map(str, missing))}", None, "MISSING"))
        if pairs:
            compared_rows.append((key, pairs, _replicate_means(replicates, compared)))
    pooled = pooled_training_noise([means for _, _, means in compared_rows if _differ(means)])
    for key, pairs, means in compared_rows:
        seeds = ",".join(str(new.seed) for new, _ in pairs)
        if pooled is not None and _differ(means):
            current = float(np.mean([new.acc_mean for new, _ in pairs]))
            result = replicate_difference(current, means, *pooled)
            noise = f"{len(means)} replicates"
        else:  # one replicate, or training that no seed changes: the episodes alone
            result, noise = pooled_difference(pairs), "episodes"
        rows.append(_row(key, seeds, result, _status(result, alpha, min_effect), noise))
    for key, actual in sorted(actual_groups.items(), key=lambda item: str(item[0])):
        if key not in expected_groups:
            seeds = ",".join(str(r.seed) for r in sorted(actual, key=lambda r: r.seed))
            mean = sum(r.acc_mean for r in actual) / len(actual)
            rows.append(
                GateRow(*key, seeds, None, mean, None, None, None, "new")  # type: ignore[misc]
            )
    failed: dict[tuple, list[int]] = {}
    for failure in failures:
        failed.setdefault(row_key(failure, ROW_KEYS), []).append(failure.seed)
    for key, seeds in sorted(failed.items(), key=lambda item: str(item[0])):
        label = f"seed {', '.join(map(str, sorted(seeds)))} raised"
        rows.append(_row(key, label, None, "FAILED"))
    return rows


def _replicate_means(replicates: list[RunRecord], seeds: set[int]) -> list[float]:
    """Per training replicate, its mean accuracy over ``seeds`` (replicates all seeds have)."""
    by_replicate: dict[int, dict[int, float]] = {}
    for record in replicates:
        if record.seed in seeds:
            by_replicate.setdefault(record.replicate, {})[record.seed] = record.acc_mean
    return [
        float(np.mean(list(accs.values())))
        for _, accs in sorted(by_replicate.items())
        if set(accs) == seeds
    ]


def _differ(replicate_means: list[float]) -> bool:
    """Replicates that measure training noise: two or more, not all equal."""
    return len(replicate_means) >= 2 and float(np.std(replicate_means)) > 0.0


def pooled_training_noise(rows: list[list[float]]) -> tuple[float, int] | None:
    """The replicates' standard deviation pooled over the rows (percent) and its degrees of
    freedom, sum(n_i - 1): a few replicates per row pin a row's own spread down poorly (two
    give one degree of freedom), the rows of one suite together do. None without rows."""
    if not rows:
        return None
    freedom = sum(len(means) - 1 for means in rows)
    variance = sum((len(means) - 1) * float(np.var(means, ddof=1)) for means in rows) / freedom
    return math.sqrt(variance), freedom


def replicate_difference(
    current: float, replicates: list[float], pooled_sd: float, freedom: int
) -> PairedDifference:
    """``current - mean(replicates)`` (percent) under the training-noise model: the current
    run as one more replicate, ``t = d / (s * sqrt(1 + 1/n))`` with ``s`` the larger of the
    row's own spread and the suite's pooled one (a noisier row keeps its own), on the pooled
    degrees of freedom; ``ci95``: the 95% half-width of that prediction interval.
    (``n_pairs``: replicates.)"""
    from scipy import stats  # here: the CLI's start-up does not pay for SciPy

    values = np.asarray(replicates, dtype=np.float64)  # [n] percent
    n = values.size
    expected = float(values.mean())
    spread = max(float(values.std(ddof=1)), pooled_sd)
    scale = spread * math.sqrt(1.0 + 1.0 / n)
    difference = current - expected
    p_value = float(2.0 * stats.t.sf(abs(difference) / scale, df=freedom))
    ci95 = float(stats.t.ppf(0.975, df=freedom) * scale)
    return PairedDifference(n, current, expected, difference, ci95, p_value)


def _status(result: PairedDifference, alpha: float, min_effect: float) -> str:
    significant = result.p_value < alpha
    if significant and result.difference <= -min_effect:
        return "REGRESSION"
    if significant and result.difference >= min_effect:
        return "improved"
    return "ok"


def _row(
    key: tuple, seeds: str, result: PairedDifference | None, status: str, noise: str = ""
) -> GateRow:
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
        noise,
    )
