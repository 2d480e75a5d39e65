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

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.runner import BaseLoop, IterBasedTrainLoop
from mmengine.runner.loops import _InfiniteDataloaderIterator
from torch.utils.data import DataLoader, Dataset, Sampler

from fsarbench.data.episodes import EpisodeDrawer, EpisodeSet
from fsarbench.evaluation import evaluate_from_features
from fsarbench.features import StoredFeatures, embed_in_memory
from fsarbench.fileio import atomic_write_text
from fsarbench.paths import cache_dir
from fsarbench.registry import LOOPS, METRICS
from fsarbench.stats import mean_and_ci95


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
    """Indices ``start, start + 1, ..., length - 1``; the train loop moves ``start`` on resume."""

    def __init__(self, length: int) -> None:
        self.length, self.start = length, 0

    def __iter__(self):
        return iter(range(self.start, self.length))

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
            torch.manual_seed(_item_seed(self.seed, self._iter, slot=1))
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
        model = self.runner.model
        model.eval()
        features = self.features or embed_in_memory(model, self.dataloader)
        scores = evaluate_from_features(model, self.episodes, features, progress=False)
        self.evaluator.process(data_samples=[{"accuracy": a} for a in scores.accuracies])
        metrics = self.evaluator.evaluate(len(scores.accuracies))
        self.runner.call_hook("after_val_epoch", metrics=metrics)
        self.runner.call_hook("after_val")
        return metrics


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


def read_done(work_dir: Path) -> TrainingResult | None:
    marker = work_dir / DONE
    if not marker.is_file():
        return None
    data = json.loads(marker.read_text())
    return TrainingResult(
        Path(data["checkpoint"]), data["iterations"], data["best_val_acc"], work_dir
    )


def write_done(result: TrainingResult) -> None:
    atomic_write_text(
        result.work_dir / DONE,
        json.dumps(
            {
                "checkpoint": str(result.checkpoint),
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
    recognizer, clips, recipe: dict, seed: int, work_dir: Path, num_workers: int = 2
) -> TrainingResult:
    """Stage 1: classification over the train split's classes; the last weights are kept.

    ``clips`` is the train split with the train pipeline. Returns the backbone's state dict
    file; a finished stage is not trained again.
    """
    done = read_done(work_dir)
    if done is not None:
        return done
    model = FrameClassifier(recognizer, num_classes=len(clips.classes))
    iters = int(recipe["iters"])
    data = PretrainBatches(clips, int(recipe["batch_videos"]), seed, iters)
    loader = DataLoader(data, batch_size=None, sampler=IndexSampler(iters), num_workers=num_workers)
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
    done = read_done(work_dir)
    if done is not None:
        return done
    iters = int(recipe["iters"])
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
        sampler=IndexSampler(iters),
        num_workers=num_workers if train_clips is not None else 0,
    )
    if val_loader is None:  # frozen: the val loop reads stored features, the loader is unused
        val_loader = DataLoader(range(1), batch_size=1)
    val = dict(
        val_dataloader=val_loader,
        val_cfg=dict(
            type="fsarbench.EpisodicValLoop", episodes=val_episodes, features=val_features
        ),
        val_evaluator=dict(type="fsarbench.EpisodeAccuracy"),
    )
    if train_features is not None:
        model.backbone.requires_grad_(False)
    if not any(p.requires_grad for p in model.parameters()):
        # Nothing to train (ProtoNet's metrics on a frozen backbone): the weights as given.
        checkpoint = work_dir / "model.pth"
        work_dir.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), checkpoint)
        result = TrainingResult(checkpoint, 0, None, work_dir)
        write_done(result)
        return result
    iterations = _run(model, work_dir, _unique_name(work_dir), loader, recipe, seed, val)
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
