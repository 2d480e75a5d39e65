"""Meta-training on MMEngine: optional backbone pretraining, episodic training, selection on val.

Everything is driven by MMEngine's ``Runner`` (optimizer wrapper with gradient accumulation over
tasks, parameter schedulers, ``CheckpointHook``, logging, resume). fsarbench adds:

- **indexed training data**: training item ``i`` (an episode, or a pretraining batch) is a pure
  function of (seed, i): its classes, videos, frame offsets and augmentation. So two runs with
  one seed see the same data, and a resumed run continues with item ``i`` exactly, without
  decoding the skipped items again (:class:`IndexedTrainLoop`);
- **episodic validation** (:class:`EpisodicValLoop`): a seeded episode set on the **val** split,
  scored like the test; the best checkpoint by val accuracy is the one tested. The test split is
  never used for selection;
- **two modes**: ``finetune`` trains backbone and head end to end on clips (the papers'
  setting); ``frozen`` keeps the backbone fixed and trains the head on stored features;
- a checkpoint loader for torch >= 2.6, whose ``torch.load`` refuses MMEngine's own run
  checkpoints: files under fsarbench's work folder (written by fsarbench) load with
  ``weights_only=False``, anything else with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.runner import BaseLoop, IterBasedTrainLoop
from mmengine.runner.loops import _InfiniteDataloaderIterator
from torch.utils.data import DataLoader, Dataset, Sampler

from fsarbench.config import backbone_identity, config_hash, training_tag
from fsarbench.data.episodes import EpisodeDrawer, EpisodeSet, EpisodeSpec, episode_set_for
from fsarbench.errors import FsarbenchError
from fsarbench.evaluation import evaluate_from_features
from fsarbench.features import (
    FeatureStore,
    StoredFeatures,
    collate_clips,
    embed_in_memory,
    weights_hash,
)
from fsarbench.fileio import atomic_write_text
from fsarbench.locks import compute_once
from fsarbench.paths import cache_dir, data_dir
from fsarbench.registry import LOOPS, METRICS, MODELS
from fsarbench.replicates import BACKBONE, perturb_initial_weights
from fsarbench.runtime import training_threads
from fsarbench.stats import mean_and_ci95
from fsarbench.workers import end_with_parent

if TYPE_CHECKING:
    from fsarbench.data.benchmark import BenchmarkData


def work_root() -> Path:
    """Where training runs keep their MMEngine work folders (checkpoints, logs, scalars)."""
    return cache_dir() / "work"


# --- checkpoints ---------------------------------------------------------------------------


def _load_local_checkpoint(filename: str, map_location=None):
    path = Path(filename).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{filename} can not be found.")
    # Run checkpoints pickle MMEngine's message hub and numpy scalars; only fsarbench's own
    # files may be unpickled in full.
    trusted = work_root().resolve() in path.parents
    return torch.load(path, map_location=map_location, weights_only=not trusted)


def register_checkpoint_loader() -> None:
    from mmengine.runner import CheckpointLoader

    CheckpointLoader.register_scheme(prefixes="", loader=_load_local_checkpoint, force=True)


# --- indexed training data -----------------------------------------------------------------


def _item_seed(seed: int, index: int, slot: int = 0) -> int:
    return int(np.random.SeedSequence([seed, index, slot]).generate_state(1)[0])


def _seeded_clip(clips, video: int, seed: int) -> torch.Tensor:
    # MMAction2's random transforms (SampleFrames offsets, RandomCrop, Flip) draw from numpy's
    # and Python's global generators: seeding them per video makes the clip a function of the
    # seed alone, in any worker process and after a resume.
    np.random.seed(seed)
    random.seed(seed)
    return clips[video]["inputs"]  # [T, 3, H, W] uint8


class EpisodicTrainData(Dataset):
    """Item ``i``: one training episode drawn from ``default_rng([seed, i])``.

    From clips (``finetune``: decoded with the train pipeline, augmentation seeded per video)
    or from stored features (``frozen``).
    """

    metainfo: dict = {}  # noqa: RUF012  (MMEngine's loops read it for the visualizer)

    def __init__(
        self,
        drawer: EpisodeDrawer,
        seed: int,
        length: int,
        clips=None,
        features: StoredFeatures | None = None,
        video_ids: tuple[str, ...] = (),
        with_classes: bool = False,
    ) -> None:
        if (clips is None) == (features is None):
            raise ValueError("give clips (finetune) or features (frozen), not both")
        self.drawer, self.seed, self.length = drawer, seed, length
        self.clips, self.features = clips, features
        self.rows = features.rows_for(video_ids) if features is not None else None
        self.with_classes = with_classes  # heads that embed class names get the episode's

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, index])
        episode = self.drawer.draw(rng)
        item = dict(
            support_labels=torch.from_numpy(episode.support_labels),
            query_labels=torch.from_numpy(episode.query_labels),
        )
        if self.with_classes:  # class_ids [N] index split_classes, the split's class labels
            item["class_ids"] = torch.from_numpy(np.asarray(episode.classes, np.int64))
            item["split_classes"] = self.drawer.classes
        if self.features is not None:
            for name, videos in (("support", episode.support), ("query", episode.query)):
                rows = self.rows[videos]
                item[name] = torch.from_numpy(np.asarray(self.features.features[rows], np.float32))
            item["features"] = True
            return item
        videos = np.concatenate([episode.support, episode.query])
        clips = [
            _seeded_clip(self.clips, v, _item_seed(self.seed, index, slot))
            for slot, v in enumerate(videos)
        ]
        item["support"] = torch.stack(clips[: len(episode.support)])  # [S, T, 3, H, W]
        item["query"] = torch.stack(clips[len(episode.support) :])  # [Q, T, 3, H, W]
        return item


class PretrainBatches(Dataset):
    """Item ``i``: a batch of train-split clips with their class labels, drawn from
    ``default_rng([seed, i])`` (with replacement across items), augmentation seeded."""

    metainfo: dict = {}  # noqa: RUF012  (MMEngine's loops read it for the visualizer)

    def __init__(self, clips, batch_videos: int, seed: int, length: int) -> None:
        self.clips, self.batch_videos, self.seed, self.length = clips, batch_videos, seed, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, index])
        videos = rng.choice(len(self.clips), size=self.batch_videos, replace=False)
        clips = [
            _seeded_clip(self.clips, int(v), _item_seed(self.seed, index, slot))
            for slot, v in enumerate(videos)
        ]
        labels = [self.clips.get_data_info(int(v))["label"] for v in videos]
        return dict(clips=torch.stack(clips), labels=torch.tensor(labels))


class IndexSampler(Sampler):
    """Indices ``start, start + 1, ..., length - 1``; the train loop moves ``start`` on resume.

    As one of ``world`` DDP ranks, ``length`` counts this rank's iterations and iteration
    ``j`` yields the global item this rank owns: optimizer step ``s`` covers the items
    ``s * tasks_per_step ...`` of one process, split into ``world`` consecutive shares, so the
    ranks together train on exactly the tasks one process accumulates."""

    def __init__(self, length: int, rank: int = 0, world: int = 1, tasks_per_step: int = 1):
        self.length, self.start = length, 0
        self.rank, self.world, self.tasks_per_step = rank, world, tasks_per_step

    def global_index(self, local: int) -> int:
        share = self.tasks_per_step // self.world  # this rank's tasks in each optimizer step
        step, within = divmod(local, share)
        return step * self.tasks_per_step + self.rank * share + within

    def __iter__(self):
        return iter(self.global_index(j) for j in range(self.start, self.length))

    def __len__(self) -> int:
        return self.length


@LOOPS.register_module()
class IndexedTrainLoop(IterBasedTrainLoop):
    """MMEngine's iteration loop where iteration ``i`` consumes item ``i`` of an indexed
    dataset. On resume the sampler starts at the resumed iteration (MMEngine's loop would
    decode every skipped item again), and torch's generator is seeded per iteration so dropout
    and the like are a function of (seed, i) too: a resumed run matches an uninterrupted one."""

    def __init__(self, runner, dataloader, max_iters: int, seed: int = 0, **kwargs) -> None:
        super().__init__(runner, dataloader, max_iters=max_iters, **kwargs)
        self.seed = seed

    def run(self):
        self.runner.call_hook("before_train")
        self.runner.call_hook("before_train_epoch")
        if self._iter > 0:
            self.dataloader.sampler.start = self._iter
            self.dataloader_iterator = _InfiniteDataloaderIterator(self.dataloader)
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            data_batch = next(self.dataloader_iterator)
            item = self.dataloader.sampler.global_index(self._iter)  # this rank's item
            torch.manual_seed(_item_seed(self.seed, item, slot=1))
            self.run_iter(data_batch)
            self._decide_current_val_interval()
            if (
                self.runner.val_loop is not None
                and self._iter >= self.val_begin
                and (self._iter % self.val_interval == 0 or self._iter == self._max_iters)
            ):
                self.runner.val_loop.run()
        self.runner.call_hook("after_train_epoch")
        self.runner.call_hook("after_train")
        return self.runner.model


# --- validation ----------------------------------------------------------------------------


@METRICS.register_module()
class EpisodeAccuracy(BaseMetric):
    """Mean episode accuracy and its 95% interval (percent), as in the result records."""

    default_prefix = "val"

    def process(self, data_batch, data_samples) -> None:
        self.results.extend(float(sample["accuracy"]) for sample in data_samples)

    def compute_metrics(self, results: list) -> dict:
        mean, ci95 = mean_and_ci95(results)
        return {"acc": mean, "acc_ci95": ci95}


@LOOPS.register_module()
class EpisodicValLoop(BaseLoop):
    """Scores a fixed, seeded set of val episodes: the val videos are embedded with the
    current weights (or read from stored features when the backbone is frozen), then the head
    runs over every episode."""

    def __init__(
        self,
        runner,
        dataloader,
        evaluator,
        episodes: EpisodeSet,
        features: StoredFeatures | None = None,
    ) -> None:
        super().__init__(runner, dataloader)
        self.evaluator = runner.build_evaluator(evaluator)
        self.episodes, self.features = episodes, features

    def run(self) -> dict:
        self.runner.call_hook("before_val")
        self.runner.call_hook("before_val_epoch")
        from mmengine.model import is_model_wrapper

        from fsarbench.distributed import rank, world_size

        model = self.runner.model
        model = model.module if is_model_wrapper(model) else model  # DDP: the model itself
        model.eval()
        features = self.features or embed_in_memory(model, self.dataloader)
        # As one of several ranks, score episodes rank, rank + world, ...: the evaluator
        # gathers the ranks' results interleaved, which is the set's own order again.
        episodes = _every_nth(self.episodes, rank(), world_size())
        scores = evaluate_from_features(model, episodes, features, progress=False)
        self.evaluator.process(data_samples=[{"accuracy": a} for a in scores.accuracies])
        metrics = self.evaluator.evaluate(len(self.episodes))
        self.runner.call_hook("after_val_epoch", metrics=metrics)
        self.runner.call_hook("after_val")
        return metrics


def _every_nth(episodes: EpisodeSet, start: int, step: int) -> EpisodeSet:
    if step == 1:
        return episodes
    arrays = ("classes", "support", "support_labels", "query", "query_labels")
    return replace(episodes, **{name: getattr(episodes, name)[start::step] for name in arrays})


# --- pretraining model ---------------------------------------------------------------------


class FrameClassifier(BaseModel):
    """Backbone pretraining on the base classes: time-averaged pooled features, one linear
    layer, cross-entropy (the first stage of A²M²-Net and DeepBDC-style recipes)."""

    def __init__(self, recognizer, num_classes: int) -> None:
        super().__init__()
        self.recognizer = recognizer
        self.classifier = torch.nn.Linear(recognizer.backbone.channels("pooled"), num_classes)

    def init_weights(self) -> None:
        """Keep the weights: the backbone's come from the seed or a file (see FewShotRecognizer)."""

    def forward(self, clips, labels=None, mode: str = "loss"):
        pooled = self.recognizer.embed(clips, kind="pooled").mean(dim=1)  # [B, C]
        logits = self.classifier(pooled)  # [B, classes]
        if mode == "loss":
            return {"loss_cls": F.cross_entropy(logits, labels)}
        return logits


# --- runs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingResult:
    checkpoint: Path  # the selected weights (state dict of the whole model)
    iterations: int
    best_val_acc: float | None
    work_dir: Path


DONE = "done.json"


_RUNNER_NOISE = (
    "System environment",
    "Config:",
    "Hooks will be executed in the following order",
    "Distributed training is not used",
    "Checkpoints will be saved to",
    '"FileClient" will be deprecated',
    '"HardDiskBackend" is the alias',
    "Load checkpoint from",
    "Advance dataloader",
    "Auto resumed from the latest checkpoint",
    "Did not find last_checkpoint",
    "resumed epoch",
    "The best checkpoint",
)


def _quiet_runner_class():
    """MMEngine's Runner with its start-up dumps (environment, config, hook table) dropped
    from its logger, precisely; losses and validation results still show."""
    from mmengine.runner import Runner

    from fsarbench._quiet import _DropMessages

    class QuietRunner(Runner):
        def build_logger(self, *args, **kwargs):
            logger = super().build_logger(*args, **kwargs)
            logger.addFilter(_DropMessages(*_RUNNER_NOISE))
            return logger

    return QuietRunner


def read_done(work_dir: Path, repair: bool = True) -> TrainingResult | None:
    """A finished stage's result, verified: its marker parses and its checkpoint has the size
    and sha256 the marker recorded. A stage whose marker or checkpoint is corrupt (truncated,
    overwritten) is not reused: with ``repair`` (off for a plan, which only looks) its marker
    and checkpoint are removed, so the stage is computed again (resuming from its last intact
    iteration checkpoint)."""
    marker = work_dir / DONE
    if not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text())
        # relative to the work folder (absolute in markers before that): a moved cache holds
        checkpoint = work_dir / Path(data["checkpoint"]).name
        result = TrainingResult(checkpoint, int(data["iterations"]), data["best_val_acc"], work_dir)
        problem = _checkpoint_problem(checkpoint, data.get("size"), data.get("sha256"))
    except (ValueError, TypeError, KeyError, OSError) as error:
        checkpoint, problem = None, f"its marker {marker} is unreadable ({error})"
    if problem is None:
        return result
    if not repair:
        return None
    from fsarbench.console import stderr

    stderr.print(
        f"the finished stage in {work_dir} is corrupt: {problem}; computing it again",
        soft_wrap=True,
    )
    marker.unlink(missing_ok=True)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    return None


def _checkpoint_problem(checkpoint: Path, size, sha256) -> str | None:
    if not checkpoint.is_file():
        return f"{checkpoint} is missing"
    if size is not None and checkpoint.stat().st_size != size:
        return f"{checkpoint} has {checkpoint.stat().st_size} bytes, {size} were written"
    if sha256 is not None and _file_sha256(checkpoint) != sha256:
        return f"{checkpoint}'s sha256 is not the one written"
    return None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def write_done(result: TrainingResult) -> None:
    """The stage's marker, written last: the checkpoint's name (in the work folder), size and
    sha256, so a corrupt checkpoint is never read back as the stage's result."""
    atomic_write_text(
        result.work_dir / DONE,
        json.dumps(
            {
                "checkpoint": result.checkpoint.name,
                "size": result.checkpoint.stat().st_size,
                "sha256": _file_sha256(result.checkpoint),
                "iterations": result.iterations,
                "best_val_acc": result.best_val_acc,
            }
        ),
    )


def _optim_wrapper(recipe: dict, amp: str | None = None) -> dict:
    wrapper = dict(
        # float16 needs loss scaling (MMEngine's AmpOptimWrapper, CUDA only); bfloat16 does not,
        # and the backbone's autocast (FewShotRecognizer.embed) covers it
        type="AmpOptimWrapper" if amp == "fp16" else "OptimWrapper",
        optimizer=dict(recipe["optimizer"]),
        accumulative_counts=int(recipe.get("tasks_per_batch", 1)),
        clip_grad=recipe.get("clip_grad"),
    )
    if amp == "fp16":
        wrapper["dtype"] = "float16"
    if recipe.get("paramwise_cfg"):  # e.g. a lower learning rate for the backbone
        wrapper["paramwise_cfg"] = dict(recipe["paramwise_cfg"])
    return wrapper


def _hooks(recipe: dict, save_best: str | None, schedulers: bool) -> dict:
    interval = int(recipe.get("val_interval") or recipe["checkpoint_interval"])
    return dict(
        timer=dict(type="IterTimerHook"),
        logger=dict(type="LoggerHook", interval=int(recipe.get("log_interval", 50))),
        param_scheduler=dict(type="ParamSchedulerHook"),
        checkpoint=dict(
            type="CheckpointHook",
            interval=interval,
            by_epoch=False,
            # MMEngine deletes the oldest kept checkpoint before it writes the next: keeping
            # two means a kill during a write still leaves a complete one to resume from.
            max_keep_ckpts=2,
            save_best=save_best,
            rule="greater" if save_best else None,
            save_param_scheduler=schedulers,
        ),
        sampler_seed=None,
    )


def _vis_backends() -> list[dict]:
    backends = [dict(type="LocalVisBackend")]  # scalars.json: every logged value
    try:
        import tensorboard  # noqa: F401

        backends.append(dict(type="TensorboardVisBackend"))
    except ImportError:
        pass
    return backends


def _loads(path: Path) -> bool:
    try:
        _load_local_checkpoint(str(path), map_location="cpu")
    except Exception:
        return False
    return True


def repair_resume_point(work_dir: Path) -> Path | None:
    """Point ``last_checkpoint`` at the newest checkpoint that loads, or remove it.

    A process killed while MMEngine writes a checkpoint can leave a truncated file, or a
    ``last_checkpoint`` that is empty or names a file already deleted; MMEngine would then fail
    to resume. Returns the checkpoint the run will resume from."""
    pointer = work_dir / "last_checkpoint"
    if not pointer.is_file():
        return None
    named = Path(pointer.read_text().strip() or work_dir / "missing")
    if named.is_file() and _loads(named):
        return named
    candidates = sorted(
        work_dir.glob("iter_*.pth"), key=lambda p: int(p.stem.split("_")[1]), reverse=True
    )
    for candidate in candidates:
        if _loads(candidate):
            atomic_write_text(pointer, str(candidate))
            return candidate
        candidate.unlink()  # truncated by the interruption
    pointer.unlink()
    return None


def local_recipe(recipe: dict, world: int) -> dict:
    """One DDP rank's share of an iteration-based recipe: every count of iterations (the
    total, the intervals, the schedulers' milestones and periods) and the tasks accumulated per
    optimizer step divided by ``world``, which must divide them."""
    if world == 1:
        return recipe
    local = dict(recipe)
    counts = ["iters", "tasks_per_batch", "val_interval", "checkpoint_interval"]
    for name in counts:
        value = int(recipe.get(name) or (1 if name == "tasks_per_batch" else 0))
        if value % world:
            raise FsarbenchError(
                f"{name} = {value} cannot be split between {world} ranks",
                f"make it a multiple of {world}, e.g. --cfg-options "
                f"schedule.meta.{name}={value * world}",
            )
        if recipe.get(name) is not None or name == "tasks_per_batch":
            local[name] = value // world
    local["log_interval"] = max(1, int(recipe.get("log_interval", 50)) // world)
    schedulers = []
    for scheduler in recipe.get("param_scheduler") or []:
        scheduler = dict(scheduler)
        if not scheduler.get("by_epoch", True):
            for key in ("T_max", "begin", "end", "step_size"):
                if key in scheduler:
                    scheduler[key] = max(1, int(scheduler[key]) // world) if scheduler[key] else 0
            if "milestones" in scheduler:
                scheduler["milestones"] = [int(m) // world for m in scheduler["milestones"]]
        schedulers.append(scheduler)
    local["param_scheduler"] = schedulers
    return local


def _distributed_runner_args() -> dict:
    """The Runner's settings as one rank of a DDP training (none in a single process)."""
    from fsarbench.distributed import world_size

    if world_size() == 1:
        return {}
    on_cuda = torch.cuda.is_available() and torch.distributed.get_backend() == "nccl"
    device_ids = [torch.cuda.current_device()] if on_cuda else None  # CPU: no device ids
    import inspect

    # the buffers are the same on every rank: no sync before each forward (torch 2.13 renamed
    # broadcast_buffers, and warns on the old name)
    sync = (
        "forward_sync_buffers"
        if "forward_sync_buffers"
        in inspect.signature(torch.nn.parallel.DistributedDataParallel).parameters
        else "broadcast_buffers"
    )
    wrapper = {
        "type": "MMDistributedDataParallel",
        "device_ids": device_ids,
        sync: False,
        # a head whose parts sit out some episodes still synchronises its gradients
        "find_unused_parameters": True,
    }
    # the group exists already (fsarbench.distributed); the Runner joins it
    return dict(launcher="pytorch", cfg=dict(model_wrapper_cfg=wrapper))


def _run(
    model, work_dir: Path, name: str, train_loader, recipe: dict, seed: int, val: dict | None
) -> int:
    """Train under MMEngine's Runner, resuming from the last checkpoint in ``work_dir``."""
    register_checkpoint_loader()
    work_dir.mkdir(parents=True, exist_ok=True)
    # Resume only when there is something to resume (MMEngine prints, not logs, its
    # 'Did not find last_checkpoint' otherwise).
    resume = repair_resume_point(work_dir) is not None
    schedulers = list(recipe.get("param_scheduler") or [])
    interval = int(recipe.get("val_interval") or recipe["checkpoint_interval"])
    tasks = int(recipe.get("tasks_per_batch", 1))
    if interval % tasks:
        raise ValueError("the checkpoint interval must be a multiple of tasks_per_batch")
    runner = _quiet_runner_class()(
        model=model,
        work_dir=str(work_dir),
        experiment_name=name,
        train_dataloader=train_loader,
        train_cfg=dict(
            type="fsarbench.IndexedTrainLoop",
            max_iters=int(recipe["iters"]),
            val_interval=interval,
            seed=seed,
        ),
        optim_wrapper=_optim_wrapper(recipe, _amp_of(model)),
        param_scheduler=schedulers or None,
        default_hooks=_hooks(recipe, "val/acc" if val else None, bool(schedulers)),
        log_processor=dict(by_epoch=False, window_size=int(recipe.get("log_interval", 50))),
        visualizer=dict(type="Visualizer", vis_backends=_vis_backends(), name=name),
        randomness=dict(seed=seed),
        resume=resume,
        **(val or {}),
        **_distributed_runner_args(),
    )
    runner.train()
    return runner.iter


def _amp_of(model) -> str | None:
    recognizer = getattr(model, "recognizer", model)  # FrameClassifier wraps the recognizer
    return getattr(recognizer, "amp", None)


def _unique_name(work_dir: Path) -> str:
    # MMEngine keeps loggers and visualizers by name for the whole process.
    import time

    return f"{work_dir.name}-{time.time_ns()}"


def pretrain_backbone(
    recognizer,
    make_clips: Callable[[], Dataset],
    recipe: dict,
    seed: int,
    work_dir: Path,
    num_workers: int = 2,
) -> TrainingResult:
    """Stage 1: classification over the train split's classes; the last weights are kept.

    ``make_clips`` builds the train split with the train pipeline (only when the stage is
    trained). Returns the backbone's state dict file; a finished stage is not trained again.
    """
    return compute_once(
        work_dir.with_name(f".{work_dir.name}.lock"),
        f"pretraining {work_dir.parent.name} ({work_dir.name})",
        lambda: read_done(work_dir),
        lambda: _pretrain(recognizer, make_clips(), recipe, seed, work_dir, num_workers),
        kind="pretrain",
    )


def _pretrain(recognizer, clips, recipe, seed, work_dir, num_workers) -> TrainingResult:
    # The classifier starts from the stage's own seed: a stage is a function of its identity,
    # not of whichever run's model (and the random state it left) reached it first.
    torch.manual_seed(_item_seed(seed, 0, slot=2))
    model = FrameClassifier(recognizer, num_classes=len(clips.classes))
    iters = int(recipe["iters"])
    data = PretrainBatches(clips, int(recipe["batch_videos"]), seed, iters)
    loader = DataLoader(
        data,
        batch_size=None,
        sampler=IndexSampler(iters),
        num_workers=num_workers,
        worker_init_fn=end_with_parent,
    )
    iterations = _run(model, work_dir, _unique_name(work_dir), loader, recipe, seed, None)
    checkpoint = work_dir / "backbone.pth"
    torch.save(recognizer.backbone.state_dict(), checkpoint)
    result = TrainingResult(checkpoint, iterations, None, work_dir)
    write_done(result)
    return result


def meta_train(
    model,
    drawer: EpisodeDrawer,
    recipe: dict,
    seed: int,
    work_dir: Path,
    val_episodes: EpisodeSet,
    val_loader: DataLoader | None,
    train_clips=None,
    train_features: StoredFeatures | None = None,
    train_video_ids: tuple[str, ...] = (),
    val_features: StoredFeatures | None = None,
    num_workers: int = 2,
) -> TrainingResult:
    """Stage 2: episodic training; the checkpoint with the best val accuracy is selected.

    ``frozen`` mode passes ``train_features`` / ``val_features`` (the backbone never changes);
    ``finetune`` passes ``train_clips`` and a ``val_loader`` of val clips.
    """
    from fsarbench.distributed import is_main_process, rank, world_size

    done = read_done(work_dir)
    if done is not None:
        return done
    iters = int(recipe["iters"])
    world = world_size()
    local = local_recipe(recipe, world)  # this rank's share (the recipe itself in one process)
    data = EpisodicTrainData(
        drawer,
        seed,
        iters,
        clips=train_clips,
        features=train_features,
        video_ids=train_video_ids,
        with_classes=model.needs_text,
    )
    loader = DataLoader(
        data,
        batch_size=None,
        sampler=IndexSampler(
            int(local["iters"]), rank(), world, int(recipe.get("tasks_per_batch", 1))
        ),
        num_workers=num_workers if train_clips is not None else 0,
        worker_init_fn=end_with_parent,
    )
    if val_loader is None:  # frozen: the val loop reads stored features, the loader is unused
        val_loader = DataLoader(range(1), batch_size=1)
    val = dict(
        val_dataloader=val_loader,
        val_cfg=dict(
            type="fsarbench.EpisodicValLoop", episodes=val_episodes, features=val_features
        ),
        # gathered with all_gather_object, not through files in the working directory
        val_evaluator=dict(type="fsarbench.EpisodeAccuracy", collect_device="gpu"),
    )
    if train_features is not None:
        model.backbone.requires_grad_(False)
    if not any(p.requires_grad for p in model.parameters()):
        # Nothing to train (ProtoNet's metrics on a frozen backbone): the weights as given.
        checkpoint = work_dir / "model.pth"
        result = TrainingResult(checkpoint, 0, None, work_dir)
        if is_main_process():
            work_dir.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), checkpoint)
            write_done(result)
        return result
    iterations = world * _run(model, work_dir, _unique_name(work_dir), loader, local, seed, val)
    if not is_main_process():  # rank 0 selects, tests and records; the others are done
        return TrainingResult(work_dir / "model.pth", iterations, None, work_dir)
    best = sorted(
        work_dir.glob("best_val_acc_iter_*.pth"), key=lambda p: int(p.stem.split("_")[-1])
    )
    if not best:
        raise RuntimeError(f"training in {work_dir} left no best checkpoint")
    state = _load_local_checkpoint(str(best[-1]), map_location="cpu")
    checkpoint = work_dir / "model.pth"
    torch.save(state["state_dict"], checkpoint)
    best_acc = state.get("message_hub", {}).get("runtime_info", {}).get("best_score")
    result = TrainingResult(checkpoint, iterations, best_acc, work_dir)
    write_done(result)
    return result


# --- a run's training stages ----------------------------------------------------------------


def initial_backbone(config, seed: int):
    """The backbone a run's model starts from under ``seed``, without the head: what a
    pretraining stage's identity hashes. (Every method builds its backbone first, so this
    equals the model's own backbone under the same seed.)"""
    torch.manual_seed(seed)
    backbone = MODELS.build(config.backbone)
    # a training replicate's perturbation, as build_model gives the model's own backbone
    perturb_initial_weights(list(backbone.named_parameters()), config, seed, BACKBONE)
    return backbone


def pretrain_seed(config, seed: int) -> int:
    """A recipe may fix the pretraining seed: one stage then serves every run seed, as
    ImageNet weights do on the real benchmarks (and costs one pretraining, not one per seed)."""
    recipe = config.schedule["pretrain"]
    return seed if recipe.get("seed") is None else int(recipe["seed"])


# What the pretraining stage computes from its identity; a new version never reuses an old
# stage's weights. 2: the classifier is initialised from the stage's seed. 3: the CPU thread
# count is part of the key.
PRETRAIN_STAGE_VERSION = 3


def pretrain_dir(
    config, data: BenchmarkData, seed: int, initial_weights: str, threads: int | None
) -> Path:
    """The work folder of a pretraining stage: its identity is its recipe, backbone, train
    pipeline, data, starting weights (``initial_weights``: their hash) and, on CPU, the thread
    count it trains with (``runtime.training_threads``)."""
    stage = Config(
        dict(
            version=PRETRAIN_STAGE_VERSION,
            threads=threads,
            recipe=config.schedule["pretrain"],
            backbone=backbone_identity(config),  # the --weights by content
            pipeline=data.pipeline(True),
            data=config.data,  # the data identity resolve_run put in the run config
            initial_weights=initial_weights,
            **({"amp": config.amp} if config.get("amp") else {}),
        )
    )
    stage_name = f"{config_hash(stage)[:12]}-seed{seed}"
    return work_root() / data.key / "pretrain" / config.backbone_name / stage_name


def pretrain_stage(model, config, data: BenchmarkData, seed: int, weights_given: bool) -> None:
    """The schedule's pretraining stage, when it has one: trained once (or read back) and
    loaded into ``model.backbone``. Its starting weights are the backbone's initialisation
    under the stage's seed, or the ``--weights`` (``weights_given``) whatever the seed."""
    if not config.schedule["pretrain"].get("enabled"):
        return
    stage_seed = pretrain_seed(config, seed)
    if not weights_given and stage_seed != seed:
        model.backbone.load_state_dict(initial_backbone(config, stage_seed).state_dict())
    result = pretrain_backbone(
        model,
        lambda: data.clips("train", train=True),
        config.schedule["pretrain"],
        stage_seed,
        pretrain_dir(
            config,
            data,
            stage_seed,
            weights_hash(model.backbone),
            training_threads(next(model.parameters()).device),
        ),
        config.evaluation["num_workers"],
    )
    model.backbone.load_state_dict(torch.load(result.checkpoint, weights_only=True))


def frozen_features(
    model, config, data: BenchmarkData, store: FeatureStore, progress: bool, test: bool = False
):
    """The stored train and val features a head trained on a frozen backbone reads; with
    ``test``, the test split's store is made too (read again when the run tests), so that
    several processes share out all three splits' embedding."""
    dtype, evaluation = config.evaluation["feature_dtype"], config.evaluation
    splits = ("train", "val", "test") if test else ("train", "val")
    stored = data.features_of_splits(store, model, splits, dtype, evaluation, progress)
    return dict(train_features=stored["train"], val_features=stored["val"])


def train_model(
    model,
    config,
    data: BenchmarkData,
    method: str,
    seed: int,
    store: FeatureStore,
    weights_given: bool = False,
    progress: bool = True,
    test_features: bool = False,
) -> TrainingResult | None:
    """The schedule's stages (pretraining, then episodic training with selection on val);
    leaves the selected weights in ``model``. Finished stages are read back, not redone.
    ``weights_given``: the backbone was loaded from ``--weights`` (the pretraining then starts
    from them, whatever its seed). ``test_features``: a frozen training also makes the test
    split's feature store (``frozen_features``)."""
    schedule, protocol, evaluation = config.schedule, config.protocol, config.evaluation
    pretrain_stage(model, config, data, seed, weights_given)
    if schedule["mode"] == "none":
        return None
    recipe = schedule["meta"]
    tag = training_tag(schedule)
    # The stage's identity: the run's config, the weights it starts from (the pretraining's
    # output, or the initialisation) and, on CPU, the thread count: a pretraining computed
    # anew is never followed by an episodic training that was trained on another.
    threads = training_threads(next(model.parameters()).device)
    stage_name = (
        f"{protocol['name']}-{protocol['n_way']}way-{protocol['k_shot']}shot-seed{seed}"
        f"-{config_hash(config)[:12]}-{weights_hash(model)[:12]}"
    ) + ("" if threads is None else f"-threads{threads}")
    work_dir = work_root() / data.key / method / f"{config.backbone_name}-{tag}" / stage_name
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
        sources = dict(
            val_loader=None,
            train_video_ids=data.videos("train").video_ids,
            **frozen_features(model, config, data, store, progress, test_features),
        )
    else:  # finetune: clips with the train pipeline; val embedded with the current weights
        sources = dict(
            val_loader=DataLoader(
                data.clips("val"),
                batch_size=evaluation["embed_batch_videos"],
                collate_fn=collate_clips,
                num_workers=evaluation["num_workers"],
                worker_init_fn=end_with_parent,
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
    from fsarbench.distributed import is_main_process

    if is_main_process():  # the other ranks of a DDP training neither select nor test
        model.load_state_dict(torch.load(result.checkpoint, weights_only=True))
    return result
