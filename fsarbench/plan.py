"""The suite as a plan: the shared stages its runs need, the runs, and what is already done.

``fsarbench run`` turns what the user asked for into a plan before anything is computed:

- **stages**, each computed once however many runs (and processes) need it: the benchmark's
  data (synth generated, or a real benchmark prepared), a backbone pretraining (per recipe,
  backbone, starting weights and data), and the feature stores of a fixed backbone (per
  backbone checkpoint, split, feature kind and dtype);
- **runs**: (method, benchmark, way, shot, seed), each training then testing, depending on the
  stages it reads.

A stage's identity is the key the code computes when it runs it (its folder in the cache).
Where that key needs an earlier stage's output (the features of a backbone not yet
pretrained), the stage is ``pending`` until then. ``fsarbench run --dry-run`` prints the plan;
the executors (``local``, ``slurm``) run it; ``fsarbench status`` reads the plan file the
executors leave in the results folder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from fsarbench.config import canonical_json, training_tag
from fsarbench.fileio import atomic_write_text
from fsarbench.replicates import replicate_of
from fsarbench.results import failure_path
from fsarbench.runs import ResolvedRun, RunRequest, SuiteOptions, resolve_run

DONE, TO_DO, PENDING, FAILED = "done", "to do", "pending", "failed"


@dataclass
class Stage:
    kind: str  # data | pretrain | features
    name: str  # what it is, in words
    key: str  # its identity: the folder it fills, or what it waits for while pending
    state: str  # done | to do | pending
    depends: list[int] = field(default_factory=list)  # indices of earlier stages
    # runs that need it, one per feature kind: what a stage job runs to compute it
    representatives: list[RunRequest] = field(default_factory=list)
    # stages of one group are computed by one stage job: a pretraining with the feature
    # stores of its backbone, or the stores of one backbone as given, or the data alone
    group: str = ""


@dataclass
class PlannedRun:
    request: RunRequest
    record: Path
    lock: Path
    state: str  # done | to do | failed
    stages: list[int] = field(default_factory=list)  # indices of the stages it reads
    training: str = ""


@dataclass
class Plan:
    stages: list[Stage]
    runs: list[PlannedRun]

    @property
    def identity(self) -> str:
        """A short hash of the runs asked for (the plan file's name)."""
        requests = [asdict(run.request) for run in self.runs]
        return hashlib.sha256(canonical_json(requests).encode()).hexdigest()[:12]

    def render(self) -> str:
        lines = [f"stages ({len(self.stages)}):"]
        for index, stage in enumerate(self.stages):
            after = f", after {', '.join(f'#{d}' for d in stage.depends)}" if stage.depends else ""
            lines.append(f"  #{index} [{stage.state}] {stage.kind}: {stage.name}{after}")
            lines.append(f"       {stage.key}")
        done = sum(run.state == DONE for run in self.runs)
        lines.append(f"runs ({len(self.runs)}, {done} done):")
        for run in self.runs:
            needs = ", ".join(f"#{i}" for i in run.stages) or "-"
            lines.append(
                f"  [{run.state}] {run.request.label} ({run.training}; needs {needs})"
                f" -> {run.record}"
            )
        return "\n".join(lines)


class _Planner:
    """Builds the stages of a plan, one per identity, remembering what it hashed."""

    def __init__(self, options: SuiteOptions) -> None:
        self.options = options
        self.stages: list[Stage] = []
        self.index: dict[tuple, int] = {}
        self.hashes: dict[tuple, str] = {}

    def stage(self, identity: tuple, make, group: tuple) -> int:
        if identity not in self.index:
            self.index[identity] = len(self.stages)
            stage = make()
            stage.group = hashlib.sha256(canonical_json(group).encode()).hexdigest()[:12]
            self.stages.append(stage)
        return self.index[identity]

    def add_representative(self, index: int, request: RunRequest, kind: str) -> None:
        stage = self.stages[index]
        kinds = {self._kind(r) for r in stage.representatives}
        if kind not in kinds:
            stage.representatives.append(request)

    @staticmethod
    def _kind(request: RunRequest) -> str:
        from fsarbench.config import load_method_file
        from fsarbench.registry import MODELS

        return MODELS.get(load_method_file(request.method)["method"]["type"]).feature_kind

    def weights_hash_of(self, identity: tuple, compute) -> str:
        if identity not in self.hashes:
            self.hashes[identity] = compute()
        return self.hashes[identity]


def build_plan(requests: list[RunRequest], options: SuiteOptions) -> Plan:
    """The plan of ``requests``: looks at what exists and computes nothing (synth is not
    generated; backbones are built, not trained, to hash their starting weights)."""
    planner = _Planner(options)
    runs = []
    for request in requests:
        run = resolve_run(request, options, prepare=False)
        needs = _stages_of(planner, run)
        if run.stored_record() is not None and not options.force:
            state = DONE
        elif failure_path(run.path).is_file():
            state = FAILED
        else:
            state = TO_DO
        runs.append(
            PlannedRun(request, run.path, run.lock, state, needs, training_tag(run.config.schedule))
        )
    return Plan(planner.stages, runs)


def _stages_of(planner: _Planner, run: ResolvedRun) -> list[int]:
    from fsarbench.benchmarks.synth import synth_root

    config, request, options = run.config, run.request, planner.options
    kind = planner._kind(request)
    benchmark = run.benchmark
    synth = options.synth if benchmark.is_synthetic else None
    data_key = run.data.key if run.data else benchmark.name
    data_done = run.data is not None
    where = str(synth_root(synth or _default_synth())) if benchmark.is_synthetic else data_key

    data_index = planner.stage(
        ("data", data_key),
        lambda: Stage(
            "data",
            f"{data_key}: {'generate and prepare' if benchmark.is_synthetic else 'prepared'}",
            where,
            DONE if data_done else TO_DO,
        ),
        group=("data", data_key),
    )
    planner.add_representative(data_index, request, kind)
    needs = [data_index]
    schedule = config.schedule
    source = ("initial", data_key, canonical_json(config.backbone), str(options.weights))
    source_index = None
    if schedule["pretrain"].get("enabled"):
        from fsarbench.training import pretrain_seed

        stage_seed = pretrain_seed(config, request.seed)
        recipe = canonical_json(
            [schedule["pretrain"], config.backbone, config.get("amp"), replicate_of(config)]
        )
        identity = ("pretrain", data_key, recipe, stage_seed, str(options.weights))
        source = identity
        source_index = planner.stage(
            identity, lambda: _pretrain_stage(planner, run, stage_seed, data_index), identity
        )
        planner.add_representative(source_index, request, kind)
        needs.append(source_index)
    elif not options.weights:
        # each seed (and training replicate) initialises its own backbone
        source = (*source, request.seed, replicate_of(config))
    mode = schedule["mode"]
    splits = []
    if mode == "frozen":
        splits += ["train", "val"]
    if mode in ("frozen", "none") and options.feature_cache:
        splits.append("test")  # the backbone is the one the stages made: shared features
    dtype = config.evaluation["feature_dtype"]
    for split in splits:
        identity = ("features", source, split, kind, dtype, config.get("amp"))
        index = planner.stage(
            identity,
            lambda split=split: _feature_stage(planner, run, source, source_index, split, kind),
            group=source,
        )
        planner.add_representative(index, request, kind)
        needs.append(index)
    return needs


def _default_synth():
    from fsarbench.benchmarks.synth import SynthConfig

    return SynthConfig()


def _pretrain_stage(planner: _Planner, run: ResolvedRun, stage_seed: int, data_index: int):
    from fsarbench.training import pretrain_dir, read_done

    name = (
        f"pretrain {run.config.backbone_name} on {run.data.key if run.data else run.benchmark.name}"
        f" ({run.config.schedule['name']}, seed {stage_seed})"
    )
    if run.data is None:
        return Stage("pretrain", name, "after the data stage", PENDING, [data_index])
    from fsarbench.runtime import resolve_device, training_threads

    options = planner.options
    threads = training_threads(resolve_device(options.device), options.threads)
    folder = pretrain_dir(
        run.config, run.data, stage_seed, _initial_hash(planner, run, stage_seed), threads
    )
    state = DONE if read_done(folder, repair=False) is not None else TO_DO
    return Stage("pretrain", name, str(folder), state, [data_index])


def _initial_hash(planner: _Planner, run: ResolvedRun, seed: int) -> str:
    """The hash of the weights a run's backbone starts from: built under ``seed``, or the
    ``--weights`` loaded into it."""
    from fsarbench.backbones import load_backbone_weights
    from fsarbench.features import weights_hash
    from fsarbench.training import initial_backbone

    options = planner.options
    weights = options.weights if options.weights is not None and options.weights.is_file() else None
    identity = (
        "initial",
        canonical_json(run.config.backbone),
        None if weights else (seed, replicate_of(run.config)),
        weights,
    )

    def compute() -> str:
        backbone = initial_backbone(run.config, seed)
        if weights is not None:
            load_backbone_weights(backbone, weights)
        return weights_hash(backbone)

    return planner.weights_hash_of(identity, compute)


def _feature_stage(
    planner: _Planner, run: ResolvedRun, source: tuple, source_index: int | None, split, kind
):
    from fsarbench.features import FeatureKey, FeatureStore, pipeline_hash

    config, data = run.config, run.data
    dtype = config.evaluation["feature_dtype"]
    depends = [source_index] if source_index is not None else []
    what = "the pretrained backbone" if source_index is not None else "the backbone as given"
    name = f"{kind} features of {what}, {split} split ({dtype})"
    if data is None:
        return Stage("features", name, "after the data stage", PENDING, depends)
    weights = _source_hash(planner, run, source, source_index)
    if weights is None:
        return Stage("features", name, f"after stage #{source_index}", PENDING, depends)
    key = FeatureKey(
        data.key,
        split,
        kind,
        dtype,
        weights,
        pipeline_hash(
            data.pipeline(False),
            data.folder / data.prepared.splits[split].annotation,
            data.prepared.media_digest,
        ),
        config.get("amp"),
    )
    store = FeatureStore()
    state = DONE if (store.folder(key) / "index.json").is_file() else TO_DO
    return Stage("features", name, str(store.folder(key)), state, depends)


def _source_hash(planner, run, source, source_index) -> str | None:
    """The weights hash of the backbone a feature stage embeds with: the pretraining's output
    (None until it is done) or the backbone as initialised / loaded."""
    if source_index is None:
        return _initial_hash(planner, run, run.request.seed)
    stage = planner.stages[source_index]
    if stage.state != DONE:
        return None

    def compute() -> str:
        import torch

        from fsarbench.features import weights_hash
        from fsarbench.training import initial_backbone

        backbone = initial_backbone(run.config, 0)
        state = torch.load(Path(stage.key) / "backbone.pth", weights_only=True)
        backbone.load_state_dict(state)
        return weights_hash(backbone)

    return planner.weights_hash_of(("trained", stage.key), compute)


# --- plan files: what status reads ---------------------------------------------------------


def plans_folder(results_dir: Path) -> Path:
    return results_dir / ".plans"


def write_plan_file(plan: Plan, results_dir: Path, executor: str, jobs: dict | None = None) -> Path:
    """Save the plan for ``fsarbench status``: every run with its record, lock and (Slurm) job
    and log; ``jobs``: run or stage index -> {job_id, log}."""
    jobs = jobs or {}
    payload = dict(
        identity=plan.identity,
        executor=executor,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        stages=[
            dict(kind=s.kind, name=s.name, key=s.key, **jobs.get(("stage", i), {}))
            for i, s in enumerate(plan.stages)
        ],
        runs=[
            dict(
                label=run.request.label,
                request=asdict(run.request),
                record=str(run.record),
                lock=str(run.lock),
                **jobs.get(("run", i), {}),
            )
            for i, run in enumerate(plan.runs)
        ],
    )
    path = (
        plans_folder(results_dir)
        / f"{payload['created'][:19].replace(':', '')}-{plan.identity}.json"
    )
    atomic_write_text(path, json.dumps(payload, indent=1) + "\n")
    return path
