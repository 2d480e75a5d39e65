"""Runs: resolve what the user asked for, then test each (method, benchmark, way, shot, seed).

``run_suite`` is what ``fsarbench run`` calls: every input is checked before the first run
starts; each run then reuses what exists (episode set, stored features, its own record) and
writes its record atomically when it finishes, so an interrupted suite restarts cleanly.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from fsarbench.benchmarks.prepare import require_prepared
from fsarbench.benchmarks.registry import Benchmark, get_benchmark
from fsarbench.benchmarks.synth import SynthConfig, ensure_synth
from fsarbench.config import compose_run_config, config_hash, method_config_roots
from fsarbench.configs import CONFIG_ROOT
from fsarbench.data.episodes import EpisodeSpec, episode_set_for, sample_episodes, split_videos
from fsarbench.data.pipelines import build_pipeline
from fsarbench.errors import FsarbenchError
from fsarbench.evaluation import evaluate_from_features, evaluate_per_episode
from fsarbench.features import FeatureKey, FeatureStore, pipeline_hash, weights_hash
from fsarbench.paths import data_dir
from fsarbench.registry import DATASETS, MODELS
from fsarbench.results import RunRecord, load_record, record_path, run_name, write_record
from fsarbench.stats import mean_and_ci95

TRAINING = "none"  # meta-training arrives with the training issue


# --- names ---------------------------------------------------------------------------------


def registered_methods() -> dict[str, type]:
    """Registry name -> class, for every registered few-shot method."""
    from fsarbench.methods import FewShotRecognizer

    MODELS.import_from_location()
    return {
        name: cls
        for name, cls in sorted(MODELS.module_dict.items())
        if isinstance(cls, type) and issubclass(cls, FewShotRecognizer)
    }


def method_configs() -> dict[str, Path]:
    """Config name -> file, for ``configs/<method>/<name>.py`` of every registered method.

    ``<method>.py`` is the method's main config; other files in the folder are its variants
    (``protonet_cos_mean``) and are addressed by their own names.
    """
    found: dict[str, Path] = {}
    methods = registered_methods()
    for root in method_config_roots():
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "_base_"):
            # fsarbench's own folders are its registered methods; folders elsewhere belong to
            # methods that their configs' custom_imports register when loaded.
            if root == CONFIG_ROOT and folder.name not in methods:
                continue
            for path in sorted(folder.glob("*.py")):
                found.setdefault(path.stem, path)
    return found


def resolve_methods(spec: str) -> list[str]:
    """``all`` (every method's main config), names, globs (``protonet*``), comma-separated."""
    configs = method_configs()
    main = [name for name, path in configs.items() if path.parent.name == name]
    chosen: list[str] = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        if part == "all":
            matches = main
        elif any(c in part for c in "*?["):
            matches = fnmatch.filter(configs, part)
        else:
            matches = [part] if part in configs else []
        if not matches:
            raise FsarbenchError(
                f"unknown method {part!r}",
                f"use all, a glob, or one of: {', '.join(configs)} (`fsarbench ls methods`)",
            )
        chosen.extend(m for m in matches if m not in chosen)
    if not chosen:
        raise FsarbenchError("no method named", "pass --methods all, or a name")
    return chosen


def resolve_benchmarks(spec: str) -> list[Benchmark]:
    chosen: list[Benchmark] = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        benchmark = get_benchmark(part)
        if benchmark not in chosen:
            chosen.append(benchmark)
    if not chosen:
        raise FsarbenchError("no benchmark named", "pass --datasets synth, or another name")
    return chosen


def benchmark_key(benchmark: Benchmark, synth: SynthConfig | None) -> str:
    if benchmark.is_synthetic and synth is not None and synth != SynthConfig():
        return f"{benchmark.name}-{synth.fingerprint}"
    return benchmark.name


# --- provenance ----------------------------------------------------------------------------


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("fsarbench", "torch", "mmengine", "mmaction2", "mmcv-lite", "numpy"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "absent"
    return versions


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


# --- weights -------------------------------------------------------------------------------


def load_backbone_weights(backbone: torch.nn.Module, path: Path) -> None:
    """Load a state dict saved from this backbone (``torch.save(state_dict)`` or safetensors),
    with ``weights_only=True``; every key and shape is checked."""
    if not path.is_file():
        raise FsarbenchError(f"--weights {path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise FsarbenchError(
            f"--weights {path} cannot be read as a state dict ({type(error).__name__}: {error})",
            "save weights with torch.save(model.state_dict(), FILE) or as .safetensors",
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    prefix = "backbone."
    if all(key.startswith(prefix) for key in state):
        state = {key[len(prefix) :]: value for key, value in state.items()}
    expected = backbone.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = sorted(
        f"{key} {tuple(state[key].shape)} (expected {tuple(expected[key].shape)})"
        for key in set(state) & set(expected)
        if tuple(state[key].shape) != tuple(expected[key].shape)
    )
    if missing or extra or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", extra), ("wrong shape", wrong)):
            if keys:
                shown = ", ".join(keys[:5]) + (
                    f" and {len(keys) - 5} more" if len(keys) > 5 else ""
                )
                parts.append(f"{len(keys)} {label}: {shown}")
        raise FsarbenchError(
            f"--weights {path} does not fit the backbone ({'; '.join(parts)})",
            "use weights saved from the same backbone config (`fsarbench config` shows it)",
        )
    backbone.load_state_dict(state)


# --- one run -------------------------------------------------------------------------------


@dataclass
class RunOutcome:
    record: RunRecord
    path: Path
    skipped: bool
    notes: list[str] = field(default_factory=list)


@dataclass
class SuiteOptions:
    results_dir: Path = Path("results")
    force: bool = False
    feature_cache: bool = True
    weights: Path | None = None
    device: str = "cpu"
    progress: bool = True
    synth: SynthConfig | None = None


def run_one(
    method: str,
    benchmark: Benchmark,
    n_way: int | None,
    k_shot: int,
    seed: int,
    episodes: int | None,
    queries: int | None,
    options: SuiteOptions,
    store: FeatureStore | None = None,
) -> RunOutcome:
    started = time.perf_counter()
    synth = options.synth if benchmark.is_synthetic else None
    config = compose_run_config(
        method,
        benchmark,
        n_way=n_way,
        k_shot=k_shot,
        queries_per_class=queries,
        episodes=episodes,
        synth=synth.__dict__ if synth else None,
    )
    if options.weights is not None:
        config.weights = str(options.weights.resolve())
    protocol = config.protocol
    key = benchmark_key(benchmark, synth)
    name = run_name(
        protocol["name"], protocol["n_way"], protocol["k_shot"], protocol["test_episodes"], seed
    )
    path = record_path(options.results_dir, key, method, config.backbone_name, TRAINING, name)
    digest = config_hash(config)
    notes = []
    if path.is_file() and not options.force:
        existing = load_record(path)
        if existing.config_hash == digest:
            return RunOutcome(existing, path, skipped=True)
        notes.append("config changed since the stored record: run again")

    if benchmark.is_synthetic:
        ensure_synth(synth, progress=options.progress)
    prepared, prepared_dir = require_prepared(benchmark, synth)
    pipeline = build_pipeline(protocol, train=False, decoder=config.benchmark["decoder"])
    dataset = DATASETS.build(
        dict(
            type="FewShotClipDataset",
            benchmark=benchmark.name,
            split="test",
            pipeline=pipeline,
            test_mode=True,
            synth=synth.__dict__ if synth else None,
        )
    )
    spec = EpisodeSpec(
        protocol["n_way"],
        protocol["k_shot"],
        protocol["queries_per_class_test"],
        protocol["test_episodes"],
        seed,
    )
    episode_set = episode_set_for(
        split_videos(prepared, prepared_dir, "test"), spec, protocol, data_dir() / "episodes" / key
    )

    torch.manual_seed(seed)  # the untrained model's initialisation is part of the seed
    model = MODELS.build(dict(**config.method, backbone=config.backbone))
    if options.weights is not None:
        load_backbone_weights(model.backbone, options.weights)
    model.to(options.device)
    evaluation = config.evaluation
    backbone_hash = weights_hash(model.backbone)
    if options.feature_cache:
        store = store or FeatureStore()
        feature_key = FeatureKey(
            key,
            "test",
            model.feature_kind,
            evaluation["feature_dtype"],
            backbone_hash,
            pipeline_hash(
                pipeline, prepared_dir / prepared.splits["test"].annotation, prepared.data_root
            ),
        )
        stored = store.get_or_embed(
            feature_key,
            model,
            dataset,
            evaluation["embed_batch_videos"],
            evaluation["num_workers"],
            options.progress,
        )
        scores = evaluate_from_features(
            model, episode_set, stored, evaluation["episodes_per_batch"], options.progress
        )
        frame_forwards = stored.frame_forwards
    else:
        scores = evaluate_per_episode(
            model,
            episode_set,
            dataset,
            evaluation["feature_dtype"],
            evaluation["num_workers"],
            options.progress,
        )
        frame_forwards = scores.frame_forwards
    acc_mean, acc_ci95 = mean_and_ci95(scores.accuracies)
    record = RunRecord(
        method=method,
        method_config=dict(config.method),
        backbone=config.backbone_name,
        benchmark=key,
        split="test",
        training=TRAINING,
        protocol=dict(protocol),
        protocol_name=protocol["name"],
        protocol_version=int(protocol["version"]),
        n_way=protocol["n_way"],
        k_shot=protocol["k_shot"],
        queries_per_class=protocol["queries_per_class_test"],
        seed=seed,
        n_episodes=len(episode_set),
        acc_mean=acc_mean,
        acc_ci95=acc_ci95,
        episode_accuracies=[round(float(a), 6) for a in scores.accuracies],
        episode_set_hash=episode_set.content_hash,
        backbone_weights_hash=backbone_hash,
        checkpoint_hash=weights_hash(model),
        weights_file=str(options.weights.resolve()) if options.weights else None,
        config_hash=digest,
        feature_cache=options.feature_cache,
        feature_dtype=evaluation["feature_dtype"],
        versions=package_versions(),
        git_commit=git_commit(),
        device=options.device,
        wall_time_s=round(time.perf_counter() - started, 3),
        embed_frame_forwards=int(frame_forwards),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        notes=notes,
    )
    write_record(record, path)
    return RunOutcome(record, path, skipped=False, notes=notes)


def run_suite(
    methods: list[str],
    benchmarks: list[Benchmark],
    ways: list[int | None],
    shots: list[int],
    seeds: list[int],
    episodes: int | None,
    queries: int | None,
    options: SuiteOptions,
    on_outcome: Callable[[RunOutcome], None] | None = None,
) -> list[RunOutcome]:
    """Check every input, then run (or skip) each combination, benchmark by benchmark."""
    check_inputs(methods, benchmarks, ways, shots, queries, options)
    store = FeatureStore()
    outcomes = []
    for benchmark in benchmarks:
        for method in methods:
            for n_way in ways:
                for k_shot in shots:
                    for seed in seeds:
                        outcome = run_one(
                            method,
                            benchmark,
                            n_way,
                            k_shot,
                            seed,
                            episodes,
                            queries,
                            options,
                            store,
                        )
                        outcomes.append(outcome)
                        if on_outcome is not None:
                            on_outcome(outcome)
    return outcomes


def check_inputs(
    methods: list[str],
    benchmarks: list[Benchmark],
    ways,
    shots,
    queries: int | None,
    options: SuiteOptions,
) -> None:
    """Everything that can be checked before the first run starts: weights, devices, data, and
    whether each benchmark's test split can supply the largest episodes asked for."""
    if options.weights is not None and not options.weights.is_file():
        raise FsarbenchError(f"--weights {options.weights}: no such file")
    if options.synth is not None:
        options.synth.validate()
    if options.synth is not None and not any(b.is_synthetic for b in benchmarks):
        raise FsarbenchError(
            "synth settings were given, but synth is not among the benchmarks",
            "add synth to --datasets, or drop --synth",
        )
    if options.device.startswith("cuda") and not torch.cuda.is_available():
        raise FsarbenchError(f"--device {options.device}: no CUDA device here", "use --device cpu")
    for benchmark in benchmarks:
        synth = options.synth if benchmark.is_synthetic else None
        if benchmark.is_synthetic:
            ensure_synth(synth, progress=options.progress)
        prepared, prepared_dir = require_prepared(benchmark, synth)
        largest = [w for w in ways if w is not None]
        protocol = compose_run_config(
            methods[0],
            benchmark,
            n_way=max(largest) if largest else None,
            k_shot=max(shots),
            queries_per_class=queries,
            episodes=1,
        ).protocol
        spec = EpisodeSpec(
            protocol["n_way"], protocol["k_shot"], protocol["queries_per_class_test"], 1, 0
        )
        sample_episodes(split_videos(prepared, prepared_dir, "test"), spec)
