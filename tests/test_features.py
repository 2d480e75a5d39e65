"""The feature store against the per-episode path, its keys, and resumption."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from conftest import TINY_SYNTH
from fsarbench.benchmarks.prepare import require_prepared
from fsarbench.benchmarks.registry import get_benchmark
from fsarbench.data.episodes import EpisodeSpec, sample_episodes, split_videos
from fsarbench.data.pipelines import build_pipeline
from fsarbench.evaluation import episode_logits_from_features, episode_logits_per_episode
from fsarbench.features import FeatureKey, FeatureStore, pipeline_hash, weights_hash
from fsarbench.registry import DATASETS, MODELS

PROTOCOL = dict(num_frames=8, resize_short=32, crop=28)
SYNTH = {k: getattr(TINY_SYNTH, k) for k in TINY_SYNTH.__dataclass_fields__}


@pytest.fixture
def setting(tiny_synth_home, monkeypatch, tmp_path):
    monkeypatch.setenv("FSARBENCH_HOME", str(tiny_synth_home))
    prepared, folder = require_prepared(get_benchmark("synth"), TINY_SYNTH)
    pipeline = build_pipeline(PROTOCOL, train=False)
    dataset = DATASETS.build(
        dict(
            type="FewShotClipDataset",
            benchmark="synth",
            split="test",
            pipeline=pipeline,
            synth=SYNTH,
        )
    )
    episodes = sample_episodes(
        split_videos(prepared, folder, "test"), EpisodeSpec(5, 1, 1, 12, seed=0)
    )
    torch.manual_seed(0)
    model = MODELS.build(
        dict(type="protonet", backbone=dict(type="FrameResNet", depth=18, num_stages=2))
    )
    model.eval()
    phash = pipeline_hash(
        pipeline, folder / prepared.splits["test"].annotation, prepared.media_digest
    )
    return dict(
        dataset=dataset, episodes=episodes, model=model, store=FeatureStore(tmp_path), phash=phash
    )


def _key(setting, dtype="float32"):
    return FeatureKey(
        "synth-tiny",
        "test",
        "pooled",
        dtype,
        weights_hash(setting["model"].backbone),
        setting["phash"],
    )


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-4), ("float16", 2e-2)])
def test_store_and_per_episode_paths_give_the_same_logits(setting, dtype, tolerance):
    stored = setting["store"].get_or_embed(
        _key(setting, dtype),
        setting["model"],
        lambda: setting["dataset"],
        batch_videos=7,
        progress=False,
    )
    episodes = setting["episodes"]
    cached = episode_logits_from_features(setting["model"], episodes, stored, 0, len(episodes))
    naive = torch.stack(
        [
            logits
            for logits, _ in episode_logits_per_episode(
                setting["model"], episodes, setting["dataset"], dtype
            )
        ]
    )
    assert cached.shape == naive.shape == (12, 5, 5)
    assert torch.allclose(cached, naive, rtol=tolerance, atol=tolerance)
    assert torch.equal(cached.argmax(-1), naive.argmax(-1))


def test_each_video_is_embedded_once_and_then_reused(setting):
    store, key = setting["store"], _key(setting)
    first = store.get_or_embed(key, setting["model"], lambda: setting["dataset"], progress=False)
    assert first.frame_forwards == len(setting["dataset"]) * 8
    again = store.get_or_embed(key, setting["model"], lambda: setting["dataset"], progress=False)
    assert again.frame_forwards == 0
    assert np.array_equal(np.asarray(first.features), np.asarray(again.features))
    assert first.features.dtype == np.float32 and first.features.shape[1:] == (8, 128)


def test_changed_weights_or_pipeline_never_read_stale_features(setting):
    key = _key(setting)
    model = setting["model"]
    with torch.no_grad():
        next(model.backbone.parameters()).add_(1.0)
    assert weights_hash(model.backbone) != key.weights_hash
    assert _key(setting).folder_name != key.folder_name
    other_pipeline = FeatureKey(
        key.benchmark, key.split, key.kind, key.dtype, key.weights_hash, "0" * 64
    )
    assert setting["store"].folder(other_pipeline) != setting["store"].folder(key)


def test_interrupted_embedding_resumes(setting, monkeypatch):
    store, key, dataset = setting["store"], _key(setting), setting["dataset"]
    reference = FeatureStore(store.root / "reference").get_or_embed(
        key, setting["model"], lambda: dataset, batch_videos=10, progress=False
    )

    calls = {"n": 0}
    original = type(setting["model"]).embed

    def flaky(self, clips):
        calls["n"] += 1
        if calls["n"] == 4:  # the probe, then two batches, then an interruption
            raise KeyboardInterrupt
        return original(self, clips)

    monkeypatch.setattr(type(setting["model"]), "embed", flaky)
    with pytest.raises(KeyboardInterrupt):
        store.get_or_embed(key, setting["model"], lambda: dataset, batch_videos=10, progress=False)
    progress = json.loads((store.folder(key) / "progress.json").read_text())
    assert progress["rows_done"] == 20
    assert store.load(key) is None  # nothing half-written is ever read as complete

    monkeypatch.setattr(type(setting["model"]), "embed", original)
    resumed = store.get_or_embed(
        key, setting["model"], lambda: dataset, batch_videos=10, progress=False
    )
    assert resumed.frame_forwards == (len(dataset) - 20) * 8
    assert np.array_equal(np.asarray(resumed.features), np.asarray(reference.features))


def test_episode_batches_are_sized_by_the_encoded_bytes(monkeypatch):
    from types import SimpleNamespace

    import fsarbench.evaluation as evaluation

    monkeypatch.setattr(evaluation, "GATHER_BUDGET_BYTES", 1_000_000)
    episodes = SimpleNamespace(support=np.zeros((10, 25)), query=np.zeros((10, 5)))
    small = torch.zeros(100, 8, 4)  # 128 bytes a video: 3,840 an episode
    assert evaluation.episodes_within(evaluation.EncodedVideos(small), episodes, 500) == 260
    heavy = {"keys": torch.zeros(100, 84, 1152), "values": torch.zeros(100, 84, 1152)}
    assert evaluation.episodes_within(evaluation.EncodedVideos(heavy), episodes, 500) == 1


def test_rows_read_from_a_stored_array_equal_its_rows(tmp_path):
    """``StoredFeatures.read`` (``pread`` per run of consecutive rows on a whole ``.npy``
    map, indexing otherwise) gives the stored rows, in the order asked, as float32."""
    from fsarbench.features import StoredFeatures

    array = np.random.default_rng(0).standard_normal((50, 3, 4)).astype(np.float16)
    np.save(tmp_path / "features.npy", array)
    mapped = np.load(tmp_path / "features.npy", mmap_mode="r")
    rows = np.array([3, 4, 5, 10, 2, 2, 49, 0])
    read = StoredFeatures(None, tuple(map(str, range(50))), mapped).read(rows)
    assert read.dtype == np.float32 and np.array_equal(read, array[rows].astype(np.float32))
    sliced = StoredFeatures(None, tuple(map(str, range(40))), mapped[10:])  # not the whole file
    assert np.array_equal(sliced.read(np.array([0, 1, 5])), array[[10, 11, 15]].astype(np.float32))
    assert StoredFeatures(None, (), mapped).read(np.array([], dtype=np.int64)).shape == (0, 3, 4)


def test_a_maps_pass_writes_the_pooled_store_too_and_decodes_nothing_when_stored(setting):
    store, model, dataset = setting["store"], setting["model"], setting["dataset"]
    built = []

    def make_dataset():
        built.append(1)
        return dataset

    maps_key = dataclasses.replace(_key(setting), kind="maps")
    model.feature_kind = "maps"
    maps = store.get_or_embed(maps_key, model, make_dataset, progress=False)
    assert maps.frame_forwards == len(dataset) * 8 and len(built) == 1
    companion = store.load(_key(setting))  # the pooled store of the same weights and pipeline
    assert companion is not None and companion.video_ids == maps.video_ids

    model.feature_kind = "pooled"
    reference = FeatureStore(store.root / "reference").get_or_embed(
        _key(setting), model, lambda: dataset, progress=False
    )
    assert np.array_equal(np.asarray(companion.features), np.asarray(reference.features))
    again = store.get_or_embed(_key(setting), model, make_dataset, progress=False)
    assert again.frame_forwards == 0 and len(built) == 1  # read back: no dataset built


def test_a_maps_pass_leaves_an_existing_pooled_store_alone(setting):
    store, model, dataset = setting["store"], setting["model"], setting["dataset"]
    pooled = store.get_or_embed(_key(setting), model, lambda: dataset, progress=False)
    written = (store.folder(_key(setting)) / "index.json").stat().st_mtime_ns
    model.feature_kind = "maps"
    store.get_or_embed(
        dataclasses.replace(_key(setting), kind="maps"), model, lambda: dataset, progress=False
    )
    assert (store.folder(_key(setting)) / "index.json").stat().st_mtime_ns == written
    assert np.array_equal(
        np.asarray(store.load(_key(setting)).features), np.asarray(pooled.features)
    )
