"""Runs: resolve what the user asked for, then test each (method, benchmark, way, shot, seed).

``run_suite`` is what ``fsarbench run`` calls: every input is checked before the first run
starts; each run then reuses what exists (episode set, stored features, its own record) and
writes its record atomically when it finishes, so an interrupted suite restarts cleanly.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.metadata
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from mmengine.config import Config
from torch.utils.data import DataLoader

from fsarbench.backbones import (
    CUSTOM_SUFFIX,
    architecture_differences,
    backbone_info,
    weights_pretraining,
)
from fsarbench.benchmarks.class_names import class_texts
from fsarbench.benchmarks.prepare import PreparedBenchmark, require_prepared
from fsarbench.benchmarks.registry import Benchmark, get_benchmark
from fsarbench.benchmarks.synth import SynthConfig, ensure_synth
from fsarbench.breakdown import order_pair_breakdown
from fsarbench.config import (
    compose_run_config,
    config_hash,
    load_method_file,
    method_config_roots,
)
from fsarbench.configs import CONFIG_ROOT
from fsarbench.console import stderr
from fsarbench.data.episodes import (
    EpisodeDrawer,
    EpisodeSpec,
    episode_set_for,
    split_videos,
)
from fsarbench.data.pipelines import build_pipeline
from fsarbench.errors import FsarbenchError
from fsarbench.evaluation import evaluate_from_features, evaluate_per_episode
from fsarbench.features import (
    FeatureKey,
    FeatureStore,
    collate_clips,
    pipeline_hash,
    weights_hash,
)
from fsarbench.leakage import check_leakage, leakage_for
from fsarbench.paths import data_dir
from fsarbench.registry import DATASETS, MODELS
from fsarbench.results import RunRecord, load_record, record_path, run_name, write_record
from fsarbench.runtime import check_amp, resolve_device
from fsarbench.stats import mean_and_ci95

if TYPE_CHECKING:
    from fsarbench.training import TrainingResult


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


def methods_for_backbone(methods: list[str], backbone: str | None) -> tuple[list[str], list[str]]:
    """Split ``methods`` into those that can run on ``backbone`` (None: the benchmarks'
    defaults, which have no text tower) and those that cannot: a head that embeds class names
    needs a CLIP backbone."""
    # a text tower only where the backbone is named; a method's own default backbone
    # (CLIP-FSAR's) is not enough, since `all` on its own means the benchmark's backbone
    has_text = backbone is not None and backbone_info(backbone).has_text_tower
    fits, left_out = [], []
    for method in methods:
        (left_out if method_needs_text(method) and not has_text else fits).append(method)
    return fits, left_out


def method_needs_text(method: str) -> bool:
    """Whether method config ``method``'s head embeds class names (CLIP-FSAR)."""
    return MODELS.get(load_method_file(method)["method"]["type"]).needs_text


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
    """Load backbone weights (``torch.save`` or safetensors) with ``weights_only=True``: this
    backbone's own state dict or a common layout it adapts (``adapt_state_dict``: for ResNet,
    torchvision's and MMAction2's); every key and shape is then checked."""
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
    if not isinstance(state, dict):
        raise FsarbenchError(
            f"--weights {path} holds a {type(state).__name__}, not a state dict",
            "save weights with torch.save(model.state_dict(), FILE) or as .safetensors",
        )
    if hasattr(backbone, "adapt_state_dict"):  # the backbone knows the common key layouts
        state, dropped = backbone.adapt_state_dict(state)
        if dropped:
            stderr.print(
                f"--weights {path.name}: {len(dropped)} keys outside the backbone left out "
                f"(such as {dropped[0]}: a classifier or CLIP's text tower)"
            )
    expected = backbone.state_dict()
    # BatchNorm counters are absent from older checkpoints and play no part at test time
    for key in expected:
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = expected[key]
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
            "use weights saved from the same backbone config (`fsarbench config` shows it); "
            "for CLIP and VideoMAE, give the whole Hugging Face folder: its config.json sets "
            "the architecture",
        )
    backbone.load_state_dict(state)


def weights_pretrained_on(config, options: SuiteOptions) -> tuple[str, ...]:
    """What the run's backbone weights were pretrained on: ``--pretrained-on``, else the
    backbone's declaration for its usual weights; and whether ``--weights`` suits the backbone
    (a Hugging Face folder for CLIP and VideoMAE, a state-dict file or such a folder's
    ``model.safetensors`` otherwise)."""
    info = backbone_info(config.backbone_name)
    if options.weights is not None and options.weights.is_dir() and not info.takes_folder:
        raise FsarbenchError(
            f"--weights {options.weights} is a folder, but {info.name} loads a state-dict file",
            f"give the file ({info.weights})",
        )
    return weights_pretraining(info, options.weights, options.pretrained_on)


def check_method_fits_backbone(method: str, config, options: SuiteOptions) -> None:
    """A method's needs against the run's backbone (``config``: the method's run config): the
    feature kind its head reads, and a text tower for methods that embed class names."""
    model_class = MODELS.get(config.method["type"])
    info = backbone_info(config.backbone_name)
    backbone_class = MODELS.get(info.config["type"])
    if model_class.feature_kind not in backbone_class.kinds:
        raise FsarbenchError(
            f"{method} reads {model_class.feature_kind} features, which {info.name} does not "
            "provide",
            "choose another --backbone (`fsarbench ls backbones`)",
        )
    if model_class.needs_text and not info.has_text_tower:
        raise FsarbenchError(
            f"{method} embeds class names with CLIP's text tower; {info.name} has none",
            "run it with --backbone clip-vit-b16 --weights CLIP_FOLDER",
        )
    if model_class.needs_text and not (options.weights is not None and options.weights.is_dir()):
        raise FsarbenchError(
            f"{method} embeds class names with CLIP's text tower and tokenizer, which come "
            "with CLIP's weights folder",
            "pass --weights CLIP_FOLDER (config.json, model.safetensors, vocab.json, "
            "merges.txt; see README, Backbones)",
        )


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
    weights: Path | None = None  # a state-dict file, or a Hugging Face folder (CLIP, VideoMAE)
    backbone: str | None = None  # a backbone name; None: the method's, else the benchmark's
    device: str = "auto"  # auto (CUDA when there is one), cpu, cuda[:N]
    amp: str | None = None  # bf16 / fp16 autocast of the backbone; None: float32
    progress: bool = True
    synth: SynthConfig | None = None
    training: str | None = None  # none | finetune | frozen; None: the schedule's default
    pretrain: bool | None = None  # None: the schedule's default
    cfg_options: dict = field(default_factory=dict)  # dotted keys merged into every run config
    pretrained_on: tuple[str, ...] = ()  # corpora the --weights were pretrained on
    allow_leakage: bool = False  # run even when that pretraining saw the test classes


@dataclass
class BenchmarkData:
    """One benchmark as prepared on this machine: splits, pipelines and the feature keys."""

    benchmark: Benchmark
    key: str
    synth: SynthConfig | None
    prepared: PreparedBenchmark
    folder: Path
    decoder: str
    protocol: dict

    def pipeline(self, train: bool) -> list[dict]:
        return build_pipeline(self.protocol, train=train, decoder=self.decoder)

    def clips(self, split: str, train: bool = False):
        return DATASETS.build(
            dict(
                type="FewShotClipDataset",
                benchmark=self.benchmark.name,
                split=split,
                pipeline=self.pipeline(train),
                test_mode=not train,
                synth=self.synth.__dict__ if self.synth else None,
            )
        )

    def videos(self, split: str):
        return split_videos(self.prepared, self.folder, split)

    def class_texts(self) -> dict[str, str]:
        """Class label -> class name in words, over every split (for heads that embed names)."""
        texts = {}
        for split in self.prepared.splits:
            labels = self.videos(split).classes
            texts.update(zip(labels, class_texts(self.benchmark, labels), strict=True))
        return texts

    def identity(self) -> dict:
        """What a run reads: where the videos are and the bytes of every split's prepared
        list. It enters the run config, so its hash, the training stages' work folders and the
        record's ``config_hash``: a regenerated synth or a re-prepared benchmark is never served
        stale weights or a stale record."""
        digest = hashlib.sha256()
        for split in sorted(self.prepared.splits):
            digest.update((self.folder / self.prepared.splits[split].annotation).read_bytes())
        return dict(data_root=str(self.prepared.data_root), annotations=digest.hexdigest())

    def features(
        self, store: FeatureStore, model, split: str, dtype: str, evaluation: dict, progress: bool
    ):
        """Stored features of a split under the test pipeline (embedded on first use)."""
        key = FeatureKey(
            self.key,
            split,
            model.feature_kind,
            dtype,
            weights_hash(model.backbone),
            pipeline_hash(
                self.pipeline(False),
                self.folder / self.prepared.splits[split].annotation,
                self.prepared.data_root,
            ),
            model.amp,
        )
        return store.get_or_embed(
            key,
            model,
            self.clips(split),
            evaluation["embed_batch_videos"],
            evaluation["num_workers"],
            progress,
        )


def load_benchmark_data(benchmark: Benchmark, config, options: SuiteOptions) -> BenchmarkData:
    synth = options.synth if benchmark.is_synthetic else None
    if benchmark.is_synthetic:
        ensure_synth(synth, progress=options.progress)
    prepared, folder = require_prepared(benchmark, synth)
    return BenchmarkData(
        benchmark,
        benchmark_key(benchmark, synth),
        synth,
        prepared,
        folder,
        config.benchmark["decoder"],
        dict(config.protocol),
    )


def training_tag(schedule: dict) -> str:
    """How the tested weights came about, as recorded: none, finetune, frozen, pretrain+..."""
    mode = schedule["mode"]
    if schedule["pretrain"].get("enabled"):
        return "pretrain" if mode == "none" else f"pretrain+{mode}"
    return mode


def train_model(
    model,
    config,
    data: BenchmarkData,
    method: str,
    seed: int,
    options: SuiteOptions,
    store: FeatureStore,
) -> TrainingResult | None:
    """The schedule's stages (pretraining, then episodic training with selection on val);
    leaves the selected weights in ``model``. Finished stages are read back, not redone."""
    from fsarbench.training import meta_train, pretrain_backbone, work_root

    schedule, protocol, evaluation = config.schedule, config.protocol, config.evaluation
    if schedule["pretrain"].get("enabled"):
        recipe = schedule["pretrain"]
        # A recipe may fix the pretraining seed: one stage then serves every run seed, as
        # ImageNet weights do on the real benchmarks (and costs one pretraining, not one per
        # seed). Its starting weights are the backbone's initialisation under that seed, or the
        # --weights file; both are part of the stage's identity.
        pretrain_seed = seed if recipe.get("seed") is None else int(recipe["seed"])
        if options.weights is None and pretrain_seed != seed:
            torch.manual_seed(pretrain_seed)
            model.backbone.load_state_dict(MODELS.build(config.backbone).state_dict())
        stage = Config(
            dict(
                recipe=recipe,
                backbone=config.backbone,
                pipeline=data.pipeline(True),
                data=config.data,  # the data identity run_one put in the run config
                initial_weights=weights_hash(model.backbone),
                **({"amp": model.amp} if model.amp else {}),
            )
        )
        stage_name = f"{config_hash(stage)[:12]}-seed{pretrain_seed}"
        pretrain_dir = work_root() / data.key / "pretrain" / config.backbone_name / stage_name
        result = pretrain_backbone(
            model,
            data.clips("train", train=True),
            recipe,
            pretrain_seed,
            pretrain_dir,
            evaluation["num_workers"],
        )
        model.backbone.load_state_dict(torch.load(result.checkpoint, weights_only=True))
    if schedule["mode"] == "none":
        return None
    recipe = schedule["meta"]
    tag = training_tag(schedule)
    work_dir = (
        work_root()
        / data.key
        / method
        / f"{config.backbone_name}-{tag}"
        / f"{protocol['name']}-{protocol['n_way']}way-{protocol['k_shot']}shot-seed{seed}"
        f"-{config_hash(config)[:12]}"
    )
    drawer = EpisodeDrawer(
        data.videos("train"),
        protocol["n_way"],
        protocol["k_shot"],
        protocol["queries_per_class_train"],
    )
    val_spec = EpisodeSpec(
        protocol["n_way"],
        protocol["k_shot"],
        protocol["queries_per_class_test"],
        int(recipe["val_episodes"]),
        seed,
    )
    val_episodes = episode_set_for(
        data.videos("val"), val_spec, protocol, data_dir() / "episodes" / data.key
    )
    if schedule["mode"] == "frozen":  # the head trains on stored features of a fixed backbone
        dtype = evaluation["feature_dtype"]
        sources = dict(
            val_loader=None,
            train_features=data.features(
                store, model, "train", dtype, evaluation, options.progress
            ),
            train_video_ids=data.videos("train").video_ids,
            val_features=data.features(store, model, "val", dtype, evaluation, options.progress),
        )
    else:  # finetune: clips with the train pipeline; val embedded with the current weights
        sources = dict(
            val_loader=DataLoader(
                data.clips("val"),
                batch_size=evaluation["embed_batch_videos"],
                collate_fn=collate_clips,
                num_workers=evaluation["num_workers"],
            ),
            train_clips=data.clips("train", train=True),
        )
    result = meta_train(
        model,
        drawer,
        recipe,
        seed,
        work_dir,
        val_episodes,
        num_workers=evaluation["num_workers"],
        **sources,
    )
    model.load_state_dict(torch.load(result.checkpoint, weights_only=True))
    return result


def suite_run_config(
    method: str,
    benchmark: Benchmark,
    n_way: int | None,
    k_shot: int | None,
    queries: int | None,
    episodes: int | None,
    options: SuiteOptions,
) -> Config:
    """The composed config of one run with the suite's options (synth settings, training
    mode, pretraining, ``--cfg-options``) applied."""
    synth = options.synth if benchmark.is_synthetic else None
    config = compose_run_config(
        method,
        benchmark,
        n_way=n_way,
        k_shot=k_shot,
        queries_per_class=queries,
        episodes=episodes,
        synth=synth.__dict__ if synth else None,
        backbone=options.backbone,
        training=options.training,
        pretrain=options.pretrain,
    )
    if options.weights is not None:
        config.weights = str(options.weights.resolve())
        info = backbone_info(config.backbone_name)
        if info.takes_folder and options.weights.is_dir():
            config.backbone.pretrained = config.weights  # its config.json sets the architecture
            if (options.weights / "config.json").is_file() and architecture_differences(
                info, options.weights
            ):
                # not the architecture the name stands for (a test stand-in, another size):
                # recorded apart, and never matched to the papers' numbers for the name
                config.backbone_name = info.name + CUSTOM_SUFFIX
    if options.cfg_options:
        config.merge_from_dict(options.cfg_options)
    return config


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
    config = suite_run_config(method, benchmark, n_way, k_shot, queries, episodes, options)
    pretrained_on = weights_pretrained_on(config, options)
    device = resolve_device(options.device)
    if options.amp:  # mixed precision changes the numbers: part of the run's identity
        config.amp = options.amp
    protocol, evaluation = config.protocol, config.evaluation
    tag = training_tag(config.schedule)
    key = benchmark_key(benchmark, synth)
    name = run_name(
        protocol["name"], protocol["n_way"], protocol["k_shot"], protocol["test_episodes"], seed
    )
    # a mixed-precision run is its own row everywhere (report, compare, gate): its numbers
    # are not float32's
    backbone_label = config.backbone_name + (f"@{options.amp}" if options.amp else "")
    path = record_path(options.results_dir, key, method, backbone_label, tag, name)
    check_leakage([benchmark], pretrained_on, options.allow_leakage)
    if pretrained_on:  # what the weights saw is part of the run's identity
        config.pretrained_on = list(pretrained_on)
    data = load_benchmark_data(benchmark, config, options)
    config.data = data.identity()
    digest = config_hash(config)
    notes = []
    if path.is_file() and not options.force:
        existing = load_record(path)
        if existing.config_hash == digest:
            return RunOutcome(existing, path, skipped=True)
        notes.append("config or data changed since the stored record: run again")

    store = store or FeatureStore()
    spec = EpisodeSpec(
        protocol["n_way"],
        protocol["k_shot"],
        protocol["queries_per_class_test"],
        protocol["test_episodes"],
        seed,
    )
    episode_set = episode_set_for(
        data.videos("test"), spec, protocol, data_dir() / "episodes" / key
    )

    torch.manual_seed(seed)  # the model's initialisation is part of the seed
    model = MODELS.build(dict(**config.method, backbone=config.backbone))
    if options.weights is not None and options.weights.is_file():
        load_backbone_weights(model.backbone, options.weights)
    model.amp = options.amp
    if model.needs_text:
        model.set_class_texts(data.class_texts())
    model.to(device)
    trained = train_model(model, config, data, method, seed, options, store)
    model.eval()
    backbone_hash = weights_hash(model.backbone)
    if options.feature_cache:
        stored = data.features(
            store, model, "test", evaluation["feature_dtype"], evaluation, options.progress
        )
        scores = evaluate_from_features(
            model, episode_set, stored, evaluation["episodes_per_batch"], options.progress
        )
        frame_forwards = stored.frame_forwards
    else:
        scores = evaluate_per_episode(
            model,
            episode_set,
            data.clips("test"),
            evaluation["feature_dtype"],
            evaluation["num_workers"],
            options.progress,
        )
        frame_forwards = scores.frame_forwards
    acc_mean, acc_ci95 = mean_and_ci95(scores.accuracies)
    record = RunRecord(
        method=method,
        method_config=dict(config.method),
        backbone=backbone_label,
        benchmark=key,
        split="test",
        training=tag,
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
        device=device,
        amp=options.amp,
        wall_time_s=round(time.perf_counter() - started, 3),
        embed_frame_forwards=int(frame_forwards),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        schedule=config.schedule["name"],
        train_iterations=trained.iterations if trained else 0,
        best_val_acc=trained.best_val_acc if trained else None,
        breakdown=order_pair_breakdown(episode_set, scores.predictions),
        pretrained_on=list(pretrained_on),
        leakage=leakage_for(benchmark, pretrained_on),
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
    """Everything that can be checked before the first run starts: weights, devices, leakage,
    data, and whether each benchmark's test split can supply the largest episodes asked for."""
    if options.weights is not None and not options.weights.exists():
        raise FsarbenchError(f"--weights {options.weights}: no such file or folder")
    if options.pretrained_on and options.weights is None:
        raise FsarbenchError(
            "--pretrained-on describes the --weights file, but no --weights was given",
            "pass --weights FILE with it, or drop --pretrained-on",
        )
    if options.synth is not None:
        options.synth.validate()
    if options.synth is not None and not any(b.is_synthetic for b in benchmarks):
        raise FsarbenchError(
            "synth settings were given, but synth is not among the benchmarks",
            "add synth to --datasets, or drop --synth",
        )
    check_amp(options.amp, resolve_device(options.device))
    for benchmark in benchmarks:  # what the configs alone decide, before any data is read
        for method in methods:  # a method may bring its own default backbone
            config = suite_run_config(method, benchmark, None, None, queries, 1, options)
            check_leakage(
                [benchmark], weights_pretrained_on(config, options), options.allow_leakage
            )
            check_method_fits_backbone(method, config, options)
    for benchmark in benchmarks:
        synth = options.synth if benchmark.is_synthetic else None
        if benchmark.is_synthetic:
            ensure_synth(synth, progress=options.progress)
        prepared, prepared_dir = require_prepared(benchmark, synth)
        if any(method_needs_text(m) for m in methods):
            for split in prepared.splits:  # names for the text prompts, before any run
                class_texts(benchmark, split_videos(prepared, prepared_dir, split).classes)
        largest = [w for w in ways if w is not None]
        config = suite_run_config(
            methods[0],
            benchmark,
            max(largest) if largest else None,
            max(shots),
            queries,
            1,
            options,
        )
        protocol = config.protocol
        splits = {"test": protocol["queries_per_class_test"]}
        if config.schedule["mode"] != "none":
            splits.update(
                train=protocol["queries_per_class_train"], val=protocol["queries_per_class_test"]
            )
        for split, split_queries in splits.items():
            EpisodeDrawer(
                split_videos(prepared, prepared_dir, split),
                protocol["n_way"],
                protocol["k_shot"],
                split_queries,
            )
