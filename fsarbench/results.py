"""The result record: one JSON file per run, every field documented, plain numbers only.

A run is (method, backbone, benchmark, way, shot, seed) under one protocol. Its record is
written atomically when the run finishes, so a record on disk is always complete; a run whose
record exists (with the same config hash) is not run again.
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from fsarbench.errors import FsarbenchError
from fsarbench.fileio import atomic_write_text

SCHEMA_VERSION = 1


@dataclass
class RunRecord:
    # --- what ran ---
    method: str  # registry name, e.g. "protonet"
    method_config: dict  # the method's config dict (type and options)
    backbone: str  # backbone config name, e.g. "resnet18_synth"
    benchmark: str  # benchmark key: registry name, or "synth-<settings hash>" for non-default synth
    split: str  # always "test": selection never uses it
    training: str  # none | finetune | frozen | pretrain+finetune | pretrain+frozen | pretrain
    # --- protocol ---
    protocol: dict  # name, version, n_way, k_shot, queries_per_class_test, test_episodes, frames
    protocol_name: str
    protocol_version: int
    n_way: int
    k_shot: int
    queries_per_class: int
    seed: int  # seeds the episode sampler and the model's initialisation
    # --- numbers ---
    n_episodes: int
    acc_mean: float  # mean episode accuracy, percent
    acc_ci95: float  # 1.96 * population std of episode accuracies / sqrt(n_episodes), percent
    episode_accuracies: list[float]  # per episode, fraction in [0, 1], in episode-set order
    # --- identity of inputs ---
    episode_set_hash: str  # sha256 of the episode set (same for every method on this split)
    backbone_weights_hash: str  # sha256 of the backbone weights the features came from
    checkpoint_hash: str  # sha256 of every weight of the model (backbone and head)
    weights_file: str | None  # file the backbone was loaded from, if any
    config_hash: str  # sha256 of the composed run config
    feature_cache: bool  # True: features from the store; False: embedded per episode
    feature_dtype: str  # dtype the head's input features were rounded to
    # --- provenance ---
    versions: dict  # fsarbench, torch, mmengine, mmaction2, numpy, python
    git_commit: str | None  # commit of the fsarbench checkout, "+dirty" if modified
    device: str
    wall_time_s: float  # seconds for the whole run, embedding included
    embed_frame_forwards: int  # frames the backbone processed for this run (0 if features reused)
    created: str  # ISO 8601 UTC
    schedule: str = ""  # training schedule name (synth-quick, trx-sgd); its config is hashed
    train_iterations: int = 0  # episodic training iterations run (0: not meta-trained)
    best_val_acc: float | None = None  # val accuracy (%) of the selected checkpoint
    # Query accuracy by subset, for benchmarks whose classes come in order twins (synth):
    # {"order_pairs": {queries, acc, acc_ci95, twin_predicted, twin_predicted_ci95},
    #  "no_twin_in_episode": {queries, acc, acc_ci95}}, percent; {} elsewhere.
    breakdown: dict = field(default_factory=dict)
    # Corpora the backbone's --weights were declared pretrained on, and those of them whose
    # labels include the benchmark's test classes (runs only with --allow-leakage).
    pretrained_on: list[str] = field(default_factory=list)
    leakage: list[str] = field(default_factory=list)
    amp: str | None = None  # the backbone's autocast (bf16 / fp16, --amp); None: float32
    # torch's CPU threads in the process that trained and tested (--threads): a training on
    # CPU gives the same bits only at the same count (None: a record from before it was kept)
    threads: int | None = None
    # Training replicate (--replicate): 0 is the run; R > 0 trains it again from initial
    # weights perturbed at float rounding's scale (fsarbench.replicates), for the gate's model
    # of training noise.
    replicate: int = 0
    # The run's variant: "" for the defaults, "+TAG" (--tag), or "~HASH" for an untagged run
    # whose settings differ from the defaults; ``settings`` holds those (dotted config keys,
    # and weights_sha256 for --weights). Every table's row names the method with its variant.
    variant: str = ""
    settings: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    notes: list[str] = field(default_factory=list)

    @property
    def run_name(self) -> str:
        return run_name(
            self.protocol_name, self.n_way, self.k_shot, self.n_episodes, self.seed, self.replicate
        )


def row_method(record) -> str:
    """The method as a table's row names it: its config name and the run's variant."""
    return record.method + record.variant


def row_key(record, keys) -> tuple:
    """``record``'s values of ``keys`` (a record or a failure), the method with its variant:
    an ablation (+TAG) or a changed setting (~HASH) is a row of its own in every table."""
    return tuple(row_method(record) if key == "method" else getattr(record, key) for key in keys)


def run_name(
    protocol: str, n_way: int, k_shot: int, episodes: int, seed: int, replicate: int = 0
) -> str:
    name = f"{protocol}-{n_way}way-{k_shot}shot-{episodes}ep-seed{seed}"
    return name if replicate == 0 else f"{name}-rep{replicate}"


def record_path(
    results_dir: Path, benchmark: str, method: str, backbone: str, training: str, name: str
) -> Path:
    return results_dir / "runs" / benchmark / method / f"{backbone}-{training}" / f"{name}.json"


def write_record(record: RunRecord, path: Path) -> None:
    atomic_write_text(path, json.dumps(asdict(record), indent=1) + "\n")


def load_record(path: Path) -> RunRecord:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise FsarbenchError(
            f"{path} is not a readable result record ({error})",
            "delete it, or run that run again with --force (it rewrites the record)",
        ) from None
    if data.get("schema_version") != SCHEMA_VERSION:
        raise FsarbenchError(
            f"{path} has result schema {data.get('schema_version')}, this fsarbench reads "
            f"{SCHEMA_VERSION}",
            "re-run it with --force",
        )
    known = {f.name for f in fields(RunRecord)}
    required = [
        f for f in fields(RunRecord) if MISSING is f.default and MISSING is f.default_factory
    ]
    missing = [f.name for f in required if f.name not in data]
    if missing:
        raise FsarbenchError(
            f"{path} is not a complete result record (no {', '.join(missing)})",
            "delete it and run that run again",
        )
    problem = accuracy_problem(data["episode_accuracies"], data["n_episodes"], data["acc_mean"])
    if problem:
        raise FsarbenchError(
            f"{path} cannot be trusted: {problem}", "delete it and run that run again"
        )
    return RunRecord(**{k: v for k, v in data.items() if k in known})


def accuracy_problem(accuracies, n_episodes, acc_mean) -> str | None:
    """Why per-episode accuracies cannot be compared (None when they can): not a list of
    ``n_episodes`` finite fractions in [0, 1] whose mean is ``acc_mean`` (percent)."""
    if not isinstance(accuracies, list) or not isinstance(n_episodes, int):
        return "its per-episode accuracies are not a list with an episode count"
    if len(accuracies) != n_episodes:
        return f"{len(accuracies)} per-episode accuracies for {n_episodes} episodes"
    if n_episodes < 2:
        return f"{n_episodes} episodes: too few to compare"
    values = np.asarray(
        [
            a if isinstance(a, (int, float)) and not isinstance(a, bool) else math.nan
            for a in accuracies
        ],
        dtype=np.float64,
    )
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0.0) | (values > 1.0))
    if bad.size:
        return (
            f"{bad.size} per-episode accuracies are not numbers in [0, 1] (episode {bad[0]}: "
            f"{accuracies[bad[0]]!r})"
        )
    if not isinstance(acc_mean, (int, float)) or not abs(100.0 * values.mean() - acc_mean) < 1e-3:
        return f"its mean accuracy {acc_mean!r} is not the mean of its episodes"
    return None


def load_records(results_dir: Path, replicates: bool = False) -> list[RunRecord]:
    """The records under ``results_dir``; training replicates beyond the first (R > 0, the
    gate's noise model) only with ``replicates``: a leaderboard row is replicate 0."""
    runs = results_dir / "runs"
    if not runs.is_dir():
        return []
    records = [load_record(p) for p in sorted(runs.rglob("*.json")) if not is_failure_file(p)]
    return records if replicates else [r for r in records if r.replicate == 0]


# --- failed runs ---------------------------------------------------------------------------

FAILURE_SUFFIX = ".failed.json"


@dataclass
class RunFailure:
    """A run that raised: kept beside where its record would be, as a row of its own, until
    the run succeeds (its record then replaces it)."""

    method: str
    backbone: str
    benchmark: str
    training: str
    protocol_name: str
    n_way: int
    k_shot: int
    seed: int
    n_episodes: int
    error: str  # the exception, one line: "RuntimeError: ..."
    traceback: str  # the last frames of the traceback
    log: str | None  # the job's log file, when it ran as a job (Slurm)
    host: str
    config_hash: str | None
    created: str  # ISO 8601 UTC
    status: str = "failed"
    variant: str = ""  # as the run's record would have it


def failure_path(record: Path) -> Path:
    return record.with_name(record.stem + FAILURE_SUFFIX)


def is_failure_file(path: Path) -> bool:
    return path.name.endswith(FAILURE_SUFFIX)


def write_failure(failure: RunFailure, path: Path) -> None:
    atomic_write_text(path, json.dumps(asdict(failure), indent=1) + "\n")


def load_failures(results_dir: Path) -> list[RunFailure]:
    """Every failed run under ``results_dir`` whose record has not replaced it."""
    runs = results_dir / "runs"
    if not runs.is_dir():
        return []
    failures = []
    for path in sorted(runs.rglob(f"*{FAILURE_SUFFIX}")):
        try:
            data = json.loads(path.read_text())
            failures.append(RunFailure(**{f.name: data[f.name] for f in fields(RunFailure)}))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise FsarbenchError(
                f"{path} is not a readable failure record ({error})",
                "delete it, or run that run again",
            ) from None
    return failures
