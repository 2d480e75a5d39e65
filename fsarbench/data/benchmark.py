"""A benchmark as prepared on this machine, as runs read it: splits, pipelines, clip
datasets, class names, the data identity that enters every run config, and stored features."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from fsarbench.benchmarks.class_names import class_texts
from fsarbench.benchmarks.prepare import (
    MANIFEST,
    PreparedBenchmark,
    prepared_folder,
    require_prepared,
)
from fsarbench.benchmarks.registry import Benchmark
from fsarbench.benchmarks.synth import SynthConfig, ensure_synth
from fsarbench.data.episodes import split_videos
from fsarbench.data.pipelines import build_pipeline
from fsarbench.features import FeatureKey, FeatureStore, pipeline_hash, weights_hash
from fsarbench.names import benchmark_key
from fsarbench.registry import DATASETS


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
        """What a run reads: the bytes of every split's prepared list (relative paths, labels,
        frame counts) and the media digest (every prepared video's size), not where the data
        folder is mounted. It enters the run config, so its hash, the training stages' work
        folders and the record's ``config_hash``: a regenerated synth or a re-prepared
        benchmark is never served stale weights or a stale record, and a cache or data folder
        moved to another path (another node's mount point) is reused."""
        digest = hashlib.sha256()
        for split in sorted(self.prepared.splits):
            digest.update((self.folder / self.prepared.splits[split].annotation).read_bytes())
        return dict(annotations=digest.hexdigest(), media=self.prepared.media_digest)

    def feature_key(self, model, split: str, dtype: str) -> FeatureKey:
        """The store key of a split's features under the test pipeline with ``model``'s
        backbone as it is now."""
        return FeatureKey(
            self.key,
            split,
            model.feature_kind,
            dtype,
            weights_hash(model.backbone),
            pipeline_hash(
                self.pipeline(False),
                self.folder / self.prepared.splits[split].annotation,
                self.prepared.media_digest,
            ),
            model.amp,
        )

    def features(
        self, store: FeatureStore, model, split: str, dtype: str, evaluation: dict, progress: bool
    ):
        """Stored features of a split under the test pipeline (embedded on first use; the
        split's clips are decoded only then)."""
        return store.get_or_embed(
            self.feature_key(model, split, dtype),
            model,
            lambda: self.clips(split),
            evaluation["embed_batch_videos"],
            evaluation["num_workers"],
            progress,
        )

    def features_of_splits(
        self, store: FeatureStore, model, splits, dtype: str, evaluation: dict, progress: bool
    ) -> dict:
        """:meth:`features` of several splits, taking first those no other process is
        embedding now: two workers that need the same stores embed different splits at
        once instead of one waiting on the other."""
        keys = {split: self.feature_key(model, split, dtype) for split in splits}
        pending, found = list(splits), {}
        while pending:
            split = next((s for s in pending if not store.is_embedding(keys[s])), pending[0])
            pending.remove(split)
            found[split] = self.features(store, model, split, dtype, evaluation, progress)
        return found


def load_benchmark_data(
    benchmark: Benchmark, config, synth: SynthConfig | None, progress: bool = True
) -> BenchmarkData:
    """A benchmark as prepared on this machine (synth is generated first when absent);
    ``synth``: the generator settings of a synth benchmark, ignored for real ones."""
    synth = synth if benchmark.is_synthetic else None
    if benchmark.is_synthetic:
        ensure_synth(synth, progress=progress)
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


def benchmark_is_prepared(benchmark: Benchmark, synth: SynthConfig | None) -> bool:
    """Whether the benchmark can be read as it is (a plan looks without generating synth)."""
    synth = synth if benchmark.is_synthetic else None
    return (prepared_folder(benchmark, synth) / MANIFEST).is_file()
