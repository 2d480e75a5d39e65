"""The clip dataset: any prepared benchmark, one split, as MMAction2 samples.

Each item is MMAction2's packed dict: ``inputs`` uint8 ``[T, C, H, W]`` (``FormatShape('NCHW')``
with one frame per segment) and an ``ActionDataSample`` carrying the label and the benchmark's
video id, which the feature store and the episode files key on.
"""

from __future__ import annotations

import os.path as osp
from pathlib import Path

from mmaction.datasets import BaseActionDataset

from fsarbench._quiet import quiet_mmengine_logger
from fsarbench.benchmarks.prepare import FRAME_TEMPLATE, read_annotation, require_prepared
from fsarbench.benchmarks.registry import SPLITS, get_benchmark
from fsarbench.benchmarks.synth import SynthConfig
from fsarbench.errors import FsarbenchError
from fsarbench.registry import DATASETS


@DATASETS.register_module()
class FewShotClipDataset(BaseActionDataset):
    """Clips of one split of a prepared benchmark.

    Reads the tab-delimited annotation lists that ``fsarbench data prepare`` writes (MMAction2's
    own list readers split on any whitespace, and class folders contain spaces). Labels index
    ``self.classes``, the split's class names in natural order. ``synth`` holds generator
    settings (``SynthConfig`` fields) when the benchmark is a non-default ``synth``.
    """

    def __init__(
        self,
        benchmark: str,
        split: str,
        pipeline: list,
        test_mode: bool = True,
        synth: dict | None = None,
        **kw,
    ):
        if split not in SPLITS:
            raise FsarbenchError(f"unknown split {split!r}", f"use one of {', '.join(SPLITS)}")
        self.benchmark = get_benchmark(benchmark)
        self.split = split
        synth_config = SynthConfig(**synth) if synth is not None else None
        self.prepared, folder = require_prepared(self.benchmark, synth_config)
        coverage = self.coverage = self.prepared.splits[split]
        self.classes = list(coverage.classes)
        self.media = self.prepared.media
        kw.setdefault("start_index", 1 if self.media == "frames" else 0)
        quiet_mmengine_logger()  # the decode transforms log FileClient deprecations when built
        super().__init__(
            ann_file=str(folder / coverage.annotation),
            pipeline=pipeline,
            data_prefix=dict(video=self.prepared.data_root),
            test_mode=test_mode,
            **kw,
        )
        self._refuse_undecodable(pipeline)

    def _refuse_undecodable(self, pipeline: list) -> None:
        """MMAction2's PyAV decoder takes a video's frame count from its container, and webm
        (SSv2's format) records none: it would sample from 0 frames and fail on the first clip
        with an IndexError. Refused here, before any worker starts decoding."""
        if not any(isinstance(s, dict) and s.get("type") == "mmaction.PyAVInit" for s in pipeline):
            return
        # data_list is serialized away by then (MMEngine's serialize_data): read it item by item
        filenames = (self.get_data_info(i).get("filename", "") for i in range(len(self)))
        webm = [name for name in filenames if name.lower().endswith(".webm")]
        if webm:
            raise FsarbenchError(
                f"the pyav decoder cannot read the {len(webm):,} webm videos of "
                f"{self.benchmark.name}'s {self.split} split (e.g. {webm[0]}): webm records "
                "no frame count, and MMAction2's PyAV decoder samples from it",
                "use the decord decoder (every benchmark's default: drop the "
                "benchmark.decoder override) or convert the videos to mp4",
            )

    def load_data_list(self) -> list[dict]:
        root = self.data_prefix["video"]
        data_list = []
        for entry in read_annotation(Path(self.ann_file), self.media, self.coverage):
            info = dict(
                label=entry.label, video_id=entry.video_id, class_name=self.classes[entry.label]
            )
            if self.media == "frames":
                info.update(
                    frame_dir=osp.join(root, entry.relative),
                    total_frames=entry.frames,
                    filename_tmpl=FRAME_TEMPLATE,
                )
            else:
                info["filename"] = osp.join(root, entry.relative)
            data_list.append(info)
        return data_list
