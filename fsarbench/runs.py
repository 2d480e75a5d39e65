"""Runs: test each (method, benchmark, way, shot, seed) that the user asked for.

``run_suite`` is what ``fsarbench run`` calls: every input is checked before the first run
starts; each run then reuses what exists (episode set, stored features, its own record) and
writes its record atomically when it finishes, so an interrupted suite restarts cleanly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import socket
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from mmengine.config import Config

from fsarbench.backbones import (
    CUSTOM_SUFFIX,
    architecture_differences,
    backbone_info,
    check_method_fits_backbone,
    load_backbone_weights,
    weights_content_hash,
    weights_pretrained_on,
)
from fsarbench.benchmarks.class_names import class_texts
from fsarbench.benchmarks.prepare import require_prepared
from fsarbench.benchmarks.registry import Benchmark, get_benchmark
from fsarbench.benchmarks.synth import SynthConfig, ensure_synth
from fsarbench.breakdown import order_pair_breakdown
from fsarbench.config import (
    canonical_json,
    check_cfg_options,
    compose_run_config,
    config_hash,
    settings_difference,
    training_tag,
)
from fsarbench.data.benchmark import BenchmarkData, benchmark_is_prepared, load_benchmark_data
from fsarbench.data.episodes import EpisodeDrawer, EpisodeSpec, episode_set_for, split_videos
from fsarbench.distributed import (
    broadcast_from_main,
    init_distributed,
    is_main_process,
    local_device,
    world_size,
)
from fsarbench.errors import FsarbenchError
from fsarbench.evaluation import evaluate_from_features, evaluate_per_episode
from fsarbench.features import DTYPES as FEATURE_DTYPES
from fsarbench.features import FeatureStore, weights_hash
from fsarbench.fileio import check_writable_folder
from fsarbench.leakage import (
    check_label_leakage,
    check_leakage,
    label_leakage,
    leakage_for,
    named_test_classes,
)
from fsarbench.locks import compute_once, journal_stage, stage_lock
from fsarbench.names import benchmark_key, method_needs_text
from fsarbench.paths import cache_dir, data_dir
from fsarbench.provenance import git_commit, package_versions
from fsarbench.registry import MODELS
from fsarbench.replicates import perturb_model, replicate_of
from fsarbench.results import (
    RunFailure,
    RunRecord,
    failure_path,
    load_record,
    record_path,
    run_name,
    write_failure,
    write_record,
)
from fsarbench.runtime import DEFAULT_THREADS, check_amp, resolve_device, use_threads
from fsarbench.stats import mean_and_ci95

# What the harness computes for a run from its config (episodes, evaluation, training loop):
# part of every run's identity with the method's own ``code_version``. 2: identities by
# content (no mount point in them), validated inputs.
RUN_CODE_VERSION = 2

# --- one run -------------------------------------------------------------------------------


@dataclass
class RunOutcome:
    record: RunRecord | None  # None: the run failed
    path: Path
    skipped: bool
    notes: list[str] = field(default_factory=list)
    failure: RunFailure | None = None


@dataclass
class SuiteOptions:
    results_dir: Path = Path("results")
    force: bool = False
    feature_cache: bool = True
    weights: Path | None = None  # a state-dict file, or a Hugging Face folder (CLIP, VideoMAE)
    backbone: str | None = None  # a backbone name; None: the method's, else the benchmark's
    device: str = "auto"  # auto (CUDA when there is one), cpu, cuda[:N]
    amp: str | None = None  # bf16 / fp16 autocast of the backbone; None: float32
    # torch's CPU threads in each process that computes (runtime.use_threads): a training on
    # CPU is bit-identical only at the same count; recorded, and part of training stage keys
    threads: int = DEFAULT_THREADS
    progress: bool = True
    synth: SynthConfig | None = None
    training: str | None = None  # none | finetune | frozen; None: the schedule's default
    pretrain: bool | None = None  # None: the schedule's default
    cfg_options: dict = field(default_factory=dict)  # dotted keys merged into every run config
    pretrained_on: tuple[str, ...] = ()  # corpora the --weights were pretrained on
    # the class names the --weights were trained on (--pretrained-labels, readable words)
    pretrained_labels: frozenset[str] = frozenset()
    allow_leakage: bool = False  # run even when that pretraining saw the test classes
    # none: one process; pytorch (torchrun) or slurm (srun): this process is one rank of a
    # DDP run (MMEngine's launchers)
    launcher: str = "none"
    # training replicate: R > 0 trains from perturbed initial weights (fsarbench.replicates;
    # the gate's baseline holds several); recorded, and part of the run's identity
    replicate: int = 0
    # names the suite's runs as an ablation row: records under METHOD+TAG, every table's row
    # says METHOD+TAG (untagged runs whose settings differ from the defaults are METHOD~HASH)
    tag: str | None = None


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
        config.weights = str(options.weights.resolve())  # where; not part of the identity
        config.weights_sha256 = weights_content_hash(options.weights)  # what: identity
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
        check_cfg_options(config, options.cfg_options)
        config.merge_from_dict(options.cfg_options)
        dtype = config.evaluation["feature_dtype"]
        if dtype not in FEATURE_DTYPES:
            raise FsarbenchError(
                f"evaluation.feature_dtype {dtype!r} is not a dtype the feature store keeps",
                f"use one of {', '.join(FEATURE_DTYPES)}",
            )
    if options.replicate:  # absent for replicate 0: its config, so its identity, as before
        config.schedule["replicate"] = int(options.replicate)
    # the code that computes the numbers: a new version never reuses the old one's records
    config.code_version = dict(
        harness=RUN_CODE_VERSION,
        method=getattr(MODELS.get(config.method["type"]), "code_version", 1),
    )
    return config


def run_settings(request: RunRequest, benchmark: Benchmark, config: Config, options) -> dict:
    """The settings of a run that differ from the defaults of the same method, benchmark,
    way, shot and episodes: ``--cfg-options``, ``--queries``, the ``--weights`` content."""
    defaults = dataclasses.replace(options, cfg_options={}, weights=None, replicate=0)
    reference = suite_run_config(
        request.method, benchmark, request.n_way, request.k_shot, None, request.episodes, defaults
    )
    return settings_difference(config, reference)


def run_variant(settings: dict, tag: str | None) -> str:
    """What the record's method folder and every table's row add to the method's name:
    ``+TAG`` for a tagged run, ``~HASH`` (of the settings) for an untagged run whose settings
    differ from the defaults, nothing for the defaults: a changed setting never shares a
    record with another run."""
    if tag:
        return f"+{tag}"
    if not settings:
        return ""
    return "~" + hashlib.sha256(canonical_json(settings).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class RunRequest:
    """One run as asked for: what a plan lists and a job receives (plain, picklable)."""

    method: str
    benchmark: str  # registry name
    n_way: int | None  # None: the protocol's
    k_shot: int
    seed: int
    episodes: int | None = None  # None: the protocol's
    queries: int | None = None  # None: the protocol's

    @property
    def label(self) -> str:
        way = f"{self.n_way}-way " if self.n_way else ""
        return f"{self.method} {self.benchmark} {way}{self.k_shot}-shot seed {self.seed}"


@dataclass
class ResolvedRun:
    """A request with its config composed and its identity settled: where its record goes,
    the data it reads and the hash a stored record must have to be reused."""

    request: RunRequest
    benchmark: Benchmark
    config: Config
    path: Path  # the record
    settings: dict  # what differs from the defaults (``run_settings``)
    variant: str  # "", "+TAG" or "~HASH" (``run_variant``)
    backbone_label: str  # as recorded: NAME[-custom][@amp]
    pretrained_on: tuple[str, ...]
    data: BenchmarkData | None  # None: the benchmark is not prepared (only for plans)
    digest: str | None  # the config hash, data identity included (None without data)

    @property
    def lock(self) -> Path:
        return run_lock_path(self.path)

    def stored_record(self) -> RunRecord | None:
        """The stored record of this very run (same config and data), if there is one."""
        if self.digest is None or not self.path.is_file():
            return None
        existing = load_record(self.path)
        return existing if existing.config_hash == self.digest else None


def run_lock_path(record: Path) -> Path:
    # beside the records, in a hidden folder that `report` never reads
    runs = next(p for p in record.parents if p.name == "runs")
    return runs.parent / ".locks" / record.relative_to(runs).with_suffix(".lock")


def split_label_leakage(
    benchmark: Benchmark, prepared, prepared_dir: Path, labels: frozenset[str]
) -> list[str]:
    """The prepared test split's classes among ``labels`` (``--pretrained-labels``)."""
    classes = split_videos(prepared, prepared_dir, "test").classes
    return label_leakage(named_test_classes(benchmark, classes), labels)


def run_label_leakage(run: ResolvedRun, options: SuiteOptions) -> list[str]:
    """The run's test classes among ``--pretrained-labels`` (readable names; [] without it)."""
    if not options.pretrained_labels or run.data is None:
        return []
    data = run.data
    return split_label_leakage(run.benchmark, data.prepared, data.folder, options.pretrained_labels)


def resolve_run(request: RunRequest, options: SuiteOptions, prepare: bool = True) -> ResolvedRun:
    """Compose the run's config and settle its identity. ``prepare``: generate synth when it
    is absent (a plan only looks: without prepared data the identity stays open)."""
    benchmark = get_benchmark(request.benchmark)
    synth = options.synth if benchmark.is_synthetic else None
    config = suite_run_config(
        request.method,
        benchmark,
        request.n_way,
        request.k_shot,
        request.queries,
        request.episodes,
        options,
    )
    pretrained_on = weights_pretrained_on(config, options.weights, options.pretrained_on)
    if options.amp:  # mixed precision changes the numbers: part of the run's identity
        config.amp = options.amp
    protocol = config.protocol
    name = run_name(
        protocol["name"],
        protocol["n_way"],
        protocol["k_shot"],
        protocol["test_episodes"],
        request.seed,
        replicate_of(config),
    )
    # a mixed-precision run is its own row everywhere (report, compare, gate): its numbers
    # are not float32's
    backbone_label = config.backbone_name + (f"@{options.amp}" if options.amp else "")
    tag = training_tag(config.schedule)
    key = benchmark_key(benchmark, synth)
    settings = run_settings(request, benchmark, config, options)
    variant = run_variant(settings, options.tag)
    path = record_path(
        options.results_dir, key, request.method + variant, backbone_label, tag, name
    )
    check_leakage([benchmark], pretrained_on, options.allow_leakage)
    if pretrained_on:  # what the weights saw is part of the run's identity
        config.pretrained_on = list(pretrained_on)
    data = None
    if prepare or benchmark_is_prepared(benchmark, synth):
        data = load_benchmark_data(benchmark, config, synth, options.progress)
        config.data = data.identity()
    digest = config_hash(config) if data is not None else None
    return ResolvedRun(
        request,
        benchmark,
        config,
        path,
        settings,
        variant,
        backbone_label,
        pretrained_on,
        data,
        digest,
    )


def build_model(run: ResolvedRun, options: SuiteOptions, device: str):
    """The run's model: initialised under its seed, the --weights loaded, class names set."""
    torch.manual_seed(run.request.seed)  # the model's initialisation is part of the seed
    model = MODELS.build(dict(**run.config.method, backbone=run.config.backbone))
    perturb_model(model, run.config, run.request.seed)  # a training replicate's (R > 0)
    if options.weights is not None and options.weights.is_file():
        load_backbone_weights(model.backbone, options.weights)
    model.amp = options.amp
    if model.needs_text:
        model.set_class_texts(run.data.class_texts())
    return model.to(device)


def compute_stages(
    request: RunRequest, options: SuiteOptions, store: FeatureStore | None = None
) -> None:
    """What a stage job runs: one run's shared stages (its data, its pretraining, the feature
    stores of its fixed backbone), without its own training and test."""
    from fsarbench.training import frozen_features, pretrain_stage

    use_threads(options.threads)
    run = resolve_run(request, options)
    store = store or FeatureStore()
    config, data = run.config, run.data
    model = build_model(run, options, local_device(resolve_device(options.device)))
    pretrain_stage(model, config, data, request.seed, weights_given=options.weights is not None)
    mode = config.schedule["mode"]
    if mode == "frozen":
        frozen_features(model, config, data, store, options.progress, options.feature_cache)
    elif mode == "none" and options.feature_cache:  # tested with those weights
        evaluation = config.evaluation
        data.features(
            store, model, "test", evaluation["feature_dtype"], evaluation, options.progress
        )


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
    """One run, computed once: a record of the same config and data is reused; while another
    process computes this run, this one waits for it and then reuses its record."""
    request = RunRequest(method, benchmark.name, n_way, k_shot, seed, episodes, queries)
    return execute_run(resolve_run(request, options), options, store)


def execute_run(
    run: ResolvedRun, options: SuiteOptions, store: FeatureStore | None = None
) -> RunOutcome:
    notes = []
    if run.path.is_file() and not options.force and run.stored_record() is None:
        notes.append("config or data changed since the stored record: run again")

    def reuse() -> RunOutcome | None:
        if options.force:
            return None
        record = run.stored_record()
        return RunOutcome(record, run.path, skipped=True) if record is not None else None

    def compute() -> RunOutcome:
        outcome = _compute_run(run, options, store or FeatureStore(), notes)
        failure_path(run.path).unlink(missing_ok=True)  # an earlier failure is superseded
        return outcome

    if world_size() > 1:
        return _execute_as_rank(run, options, store or FeatureStore(), notes, reuse)
    return compute_once(run.lock, f"run {run.request.label}", reuse, compute, kind="run")


def _execute_as_rank(run, options, store, notes, reuse) -> RunOutcome:
    """One run trained by every rank of a DDP group: rank 0 holds the run's lock and decides
    whether it is done already; the ranks then train it together, and rank 0 tests it."""
    if not is_main_process():
        if broadcast_from_main(None):
            return RunOutcome(None, run.path, skipped=True)
        return _compute_run(run, options, store, notes)
    with stage_lock(run.lock, f"run {run.request.label}"):
        found = reuse()
        broadcast_from_main(found is not None)
        if found is not None:
            return found
        started = time.perf_counter()
        outcome = _compute_run(run, options, store, notes)
        failure_path(run.path).unlink(missing_ok=True)
        journal_stage(
            "run", f"run {run.request.label}", str(run.lock), time.perf_counter() - started
        )
        return outcome


def _compute_run(
    run: ResolvedRun, options: SuiteOptions, store: FeatureStore, notes: list[str]
) -> RunOutcome:
    use_threads(options.threads)
    started = time.perf_counter()
    config, data, seed = run.config, run.data, run.request.seed
    protocol, evaluation = config.protocol, config.evaluation
    device = local_device(resolve_device(options.device))
    spec = EpisodeSpec(
        protocol["n_way"],
        protocol["k_shot"],
        protocol["queries_per_class_test"],
        protocol["test_episodes"],
        seed,
    )
    episode_set = episode_set_for(
        data.videos("test"), spec, protocol, data_dir() / "episodes" / data.key
    )
    model = build_model(run, options, device)
    from fsarbench.training import train_model  # MMEngine's Runner: imported when training

    trained = train_model(
        model,
        config,
        data,
        run.request.method,
        seed,
        store,
        weights_given=options.weights is not None,
        progress=options.progress,
        test_features=options.feature_cache,
    )
    if not is_main_process():  # another rank of a DDP training: rank 0 tests and records
        return RunOutcome(None, run.path, skipped=False)
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
        method=run.request.method,
        variant=run.variant,
        settings=_plain(run.settings),
        method_config=dict(config.method),
        backbone=run.backbone_label,
        benchmark=data.key,
        split="test",
        training=training_tag(config.schedule),
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
        config_hash=run.digest,
        feature_cache=options.feature_cache,
        feature_dtype=evaluation["feature_dtype"],
        versions=package_versions(),
        git_commit=git_commit(),
        device=device,
        amp=options.amp,
        threads=torch.get_num_threads(),
        replicate=replicate_of(config),
        wall_time_s=round(time.perf_counter() - started, 3),
        embed_frame_forwards=int(frame_forwards),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        schedule=config.schedule["name"],
        train_iterations=trained.iterations if trained else 0,
        best_val_acc=trained.best_val_acc if trained else None,
        breakdown=order_pair_breakdown(episode_set, scores.predictions),
        pretrained_on=list(run.pretrained_on),
        leakage=[
            *leakage_for(run.benchmark, run.pretrained_on),
            *(f"label: {name}" for name in run_label_leakage(run, options)),
        ],
        notes=notes,
    )
    write_record(record, run.path)
    return RunOutcome(record, run.path, skipped=False, notes=notes)


def suite_requests(
    methods: list[str],
    benchmarks: list[Benchmark],
    ways: list[int | None],
    shots: list[int],
    seeds: list[int],
    episodes: int | None,
    queries: int | None,
) -> list[RunRequest]:
    """Every combination, benchmark by benchmark, in the order a local suite runs them."""
    return [
        RunRequest(method, benchmark.name, n_way, k_shot, seed, episodes, queries)
        for benchmark in benchmarks
        for method in methods
        for n_way in ways
        for k_shot in shots
        for seed in seeds
    ]


def run_requests(
    requests: list[RunRequest],
    options: SuiteOptions,
    on_outcome: Callable[[RunOutcome], None] | None = None,
    store: FeatureStore | None = None,
    stop_on_bad_input: bool = True,
    jobs: int = 1,
) -> list[RunOutcome]:
    """Run (or reuse) each request in turn, or spread over ``jobs`` worker processes. A run
    that raises leaves a failure record beside where its record would be and the others go
    on (timm's benchmark keeps failed models as rows the same way); ``report`` shows it,
    ``check`` fails on it, and a later successful run replaces it. Bad input
    (``FsarbenchError``: weights that do not fit, say) stops the suite with its message
    instead, since it would fail every run alike, unless ``stop_on_bad_input`` is off (a
    Slurm job, whose failure record is its only message)."""
    store = store or FeatureStore()
    if options.launcher != "none":
        # The shared stages first, before the process group exists: whichever rank takes a
        # stage's lock computes it while the others wait on the lock, not in a collective.
        for request in requests:
            compute_stages(request, options, store)
        init_distributed(options.launcher, options.device)
    if jobs > 1:
        return _run_in_processes(requests, options, on_outcome, stop_on_bad_input, jobs)
    outcomes = []
    for request in requests:
        outcome = _run_one(request, options, store, stop_on_bad_input)
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    return outcomes


def _run_one(
    request: RunRequest,
    options: SuiteOptions,
    store: FeatureStore | None = None,
    stop_on_bad_input: bool = True,
) -> RunOutcome:
    run = resolve_run(request, options)
    try:
        return execute_run(run, options, store or FeatureStore())
    except Exception as error:
        if world_size() > 1 or (stop_on_bad_input and isinstance(error, FsarbenchError)):
            raise  # a rank that fails ends the DDP job (torchrun stops the others)
        return RunOutcome(None, run.path, skipped=False, failure=record_failure(run, error))


def _run_in_processes(
    requests: list[RunRequest],
    options: SuiteOptions,
    on_outcome: Callable[[RunOutcome], None] | None,
    stop_on_bad_input: bool,
    jobs: int,
) -> list[RunOutcome]:
    """The runs spread over ``jobs`` worker processes of ``options.threads`` threads each.
    A run computes the same bits in any process (its arithmetic depends on the thread count,
    not on the process), and the stages runs share are computed once under their locks
    while the other workers wait on them (``fsarbench.locks``), so the records equal a
    serial suite's. Outcomes are reported as runs end and returned in request order."""
    # spawn, not fork: this process has imported torch, whose thread pools a fork would copy
    # half-initialised. Workers show no progress bars: several would interleave on one line.
    context = multiprocessing.get_context("spawn")
    worker_options = dataclasses.replace(options, progress=False)
    outcomes: list[RunOutcome | None] = [None] * len(requests)
    pool = ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=context,
        initializer=use_threads,
        initargs=(options.threads,),
    )
    try:
        futures = {
            pool.submit(_run_one, request, worker_options, None, stop_on_bad_input): index
            for index, request in enumerate(requests)
        }
        for future in as_completed(futures):
            try:
                outcome = future.result()  # bad input raises here, as in a serial suite
            except BrokenProcessPool:
                raise FsarbenchError(
                    "a worker process of the suite died (killed, or out of memory)",
                    "run the same command again with --jobs 1 (the runs that ended are kept)",
                ) from None
            outcomes[futures[future]] = outcome
            if on_outcome is not None:
                on_outcome(outcome)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)  # the running runs end, no new one starts
        raise
    pool.shutdown(wait=True)
    return outcomes  # type: ignore[return-value]


def default_jobs(device: str, threads: int) -> int:
    """Worker processes for a local suite: on CPU, one per ``threads`` of the CPUs this
    process may use (the default suite on two cores: 37.0 -> 25.7 minutes, measured with
    the smaller episode batches of the same change); on a GPU one, since runs would share
    it."""
    if resolve_device(device).startswith("cuda"):
        return 1
    return max(1, len(os.sched_getaffinity(0)) // threads)


def record_failure(run: ResolvedRun, error: BaseException) -> RunFailure:
    protocol = run.config.protocol
    failure = RunFailure(
        method=run.request.method,
        variant=run.variant,
        backbone=run.backbone_label,
        benchmark=run.data.key if run.data else run.request.benchmark,
        training=training_tag(run.config.schedule),
        protocol_name=protocol["name"],
        n_way=protocol["n_way"],
        k_shot=protocol["k_shot"],
        seed=run.request.seed,
        n_episodes=protocol["test_episodes"],
        error=describe_error(error),
        traceback="".join(traceback.format_exception(error)[-12:]),
        log=os.environ.get("FSARBENCH_JOB_LOG"),
        host=socket.gethostname(),
        config_hash=run.digest,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    write_failure(failure, failure_path(run.path))
    return failure


def _plain(settings: dict) -> dict:
    """Settings as JSON keeps them (tuples as lists)."""
    return json.loads(canonical_json(settings))


def check_tags(requests: list[RunRequest], options: SuiteOptions) -> None:
    """A tag names one set of settings: a tagged run whose stored record has other settings
    is refused before anything runs (without ``--force``), so a tag never silently comes to
    mean something else in a table."""
    if not options.tag or options.force:
        return
    for request in requests:
        run = resolve_run(request, options, prepare=False)
        if not run.path.is_file():
            continue
        stored = load_record(run.path).settings
        if stored != _plain(run.settings):
            shown = ", ".join(f"{k}={v}" for k, v in stored.items()) or "the defaults"
            raise FsarbenchError(
                f"--tag {options.tag}: {run.path} holds {request.label} with other settings "
                f"({shown})",
                "choose another --tag for these settings, or pass --force to replace it",
            )


def describe_error(error: BaseException) -> str:
    if isinstance(error, FsarbenchError):
        return str(error).replace("\n", " ")
    return f"{type(error).__name__}: {error}"


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
    """Check every input, then run (or reuse) each combination, benchmark by benchmark."""
    check_inputs(methods, benchmarks, ways, shots, queries, options)
    requests = suite_requests(methods, benchmarks, ways, shots, seeds, episodes, queries)
    check_tags(requests, options)
    return run_requests(requests, options, on_outcome)


def check_inputs(
    methods: list[str],
    benchmarks: list[Benchmark],
    ways,
    shots,
    queries: int | None,
    options: SuiteOptions,
    generate: bool = True,
) -> None:
    """Everything that can be checked before the first run starts: weights, devices, leakage,
    data, and whether each benchmark's test split can supply the largest episodes asked for.
    ``generate``: make synth here if it is absent (off for a submitted plan, whose stage job
    makes it)."""
    if options.weights is not None and not options.weights.exists():
        raise FsarbenchError(
            f"--weights {options.weights}: no such file or folder",
            "give the path of a state-dict file, or of a Hugging Face folder for CLIP and "
            "VideoMAE (`fsarbench ls backbones` says which)",
        )
    if options.pretrained_on and options.weights is None:
        raise FsarbenchError(
            "--pretrained-on describes the --weights file, but no --weights was given",
            "pass --weights FILE with it, or drop --pretrained-on",
        )
    if options.pretrained_labels and options.weights is None:
        raise FsarbenchError(
            "--pretrained-labels describes the --weights file, but no --weights was given",
            "pass --weights FILE with it, or drop --pretrained-labels",
        )
    if options.synth is not None:
        options.synth.validate()
    if options.synth is not None and not any(b.is_synthetic for b in benchmarks):
        raise FsarbenchError(
            "synth settings were given, but synth is not among the benchmarks",
            "add synth to --datasets, or drop --synth",
        )
    check_amp(options.amp, resolve_device(options.device))
    # where the records and the cache go can take files: found now, not after the compute
    check_writable_folder(options.results_dir, "--results-dir")
    check_writable_folder(cache_dir(), "FSARBENCH_HOME")
    for benchmark in benchmarks:  # what the configs alone decide, before any data is read
        for method in methods:  # a method may bring its own default backbone
            config = suite_run_config(method, benchmark, None, None, queries, 1, options)
            check_leakage(
                [benchmark],
                weights_pretrained_on(config, options.weights, options.pretrained_on),
                options.allow_leakage,
            )
            check_method_fits_backbone(method, config, options.weights)
    for benchmark in benchmarks:
        synth = options.synth if benchmark.is_synthetic else None
        if benchmark.is_synthetic:
            if not generate and not benchmark_is_prepared(benchmark, synth):
                continue  # a stage job generates it; the runs check their episodes there
            ensure_synth(synth, progress=options.progress)
        prepared, prepared_dir = require_prepared(benchmark, synth)
        if options.pretrained_labels:  # VM-2: the weights' classes against the test classes
            overlap = split_label_leakage(
                benchmark, prepared, prepared_dir, options.pretrained_labels
            )
            check_label_leakage(benchmark, overlap, options.allow_leakage)
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
