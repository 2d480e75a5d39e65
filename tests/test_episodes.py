from __future__ import annotations

import numpy as np
import pytest

from fsarbench.data.episodes import (
    EpisodeSpec,
    SplitVideos,
    episode_set_for,
    load_episode_set,
    sample_episodes,
    save_episode_set,
)
from fsarbench.errors import FsarbenchError


def _videos(per_class=(8, 8, 8, 8, 8, 8), name="bench"):
    ids, labels = [], []
    for label, count in enumerate(per_class):
        for index in range(count):
            ids.append(f"c{label}v{index}")
            labels.append(label)
    classes = tuple(f"class {i}" for i in range(len(per_class)))
    return SplitVideos(name, "test", classes, tuple(ids), tuple(labels))


@pytest.mark.parametrize("n_way, k_shot, queries", [(5, 1, 1), (5, 5, 1), (3, 2, 3), (6, 1, 7)])
def test_episode_invariants(n_way, k_shot, queries):
    videos = _videos()
    episodes = sample_episodes(videos, EpisodeSpec(n_way, k_shot, queries, 200, seed=7))
    assert episodes.support.shape == (200, n_way * k_shot)
    assert episodes.query.shape == (200, n_way * queries)
    for e in range(len(episodes)):
        support, query = set(episodes.support[e]), set(episodes.query[e])
        assert len(support) == n_way * k_shot and len(query) == n_way * queries
        assert not support & query  # disjoint
        assert len(set(episodes.classes[e])) == n_way
        assert np.bincount(episodes.support_labels[e], minlength=n_way).tolist() == [k_shot] * n_way
        assert np.bincount(episodes.query_labels[e], minlength=n_way).tolist() == [queries] * n_way
        # labels are consistent: every video of local label n belongs to class classes[e, n]
        for video, label in zip(episodes.support[e], episodes.support_labels[e], strict=True):
            assert videos.labels[video] == episodes.classes[e, label]
        for video, label in zip(episodes.query[e], episodes.query_labels[e], strict=True):
            assert videos.labels[video] == episodes.classes[e, label]


def test_support_order_is_shuffled():
    episodes = sample_episodes(_videos(), EpisodeSpec(5, 5, 1, 50, seed=0))
    sorted_count = sum(np.all(np.diff(labels) >= 0) for labels in episodes.support_labels)
    assert sorted_count < 5


def test_same_seed_same_set_other_seed_other_set():
    videos = _videos()
    a = sample_episodes(videos, EpisodeSpec(5, 1, 1, 100, seed=3))
    b = sample_episodes(videos, EpisodeSpec(5, 1, 1, 100, seed=3))
    c = sample_episodes(videos, EpisodeSpec(5, 1, 1, 100, seed=4))
    assert a.content_hash == b.content_hash and np.array_equal(a.support, b.support)
    assert c.content_hash != a.content_hash


def test_save_load_roundtrip_and_tamper_detection(tmp_path):
    episodes = sample_episodes(_videos(), EpisodeSpec(5, 1, 1, 20, seed=0), {"name": "p"})
    path = tmp_path / "set.npz"
    digest = save_episode_set(episodes, path)
    loaded = load_episode_set(path)
    assert loaded.content_hash == digest and loaded.video_ids == episodes.video_ids
    assert np.array_equal(loaded.query_labels, episodes.query_labels)

    data = dict(np.load(path))
    data["support"] = data["support"][::-1].copy()
    np.savez(path, **data)
    with pytest.raises(FsarbenchError, match="content hash"):
        load_episode_set(path)


def test_episode_set_is_generated_once_and_reused(tmp_path):
    videos = _videos()
    spec = EpisodeSpec(5, 1, 1, 30, seed=1)
    first = episode_set_for(videos, spec, {"name": "p", "version": 1}, tmp_path)
    (saved,) = list(tmp_path.rglob("*.npz"))
    stamp = saved.stat().st_mtime_ns
    second = episode_set_for(videos, spec, {"name": "p", "version": 1}, tmp_path)
    assert second.content_hash == first.content_hash and saved.stat().st_mtime_ns == stamp
    # Other videos present (a re-prepared split) give another file and another set.
    fewer = _videos((8, 8, 8, 8, 8, 7))
    third = episode_set_for(fewer, spec, {"name": "p", "version": 1}, tmp_path)
    assert third.content_hash != first.content_hash
    assert len(list(tmp_path.rglob("*.npz"))) == 2


def test_too_few_classes_or_videos():
    with pytest.raises(FsarbenchError) as error:
        sample_episodes(_videos((8, 8, 8, 1, 1, 1)), EpisodeSpec(5, 1, 1, 10, seed=0))
    assert "only 3 classes have at least 2 present videos" in error.value.problem
    assert "fewer ways" in error.value.fix
    with pytest.raises(FsarbenchError, match="at least 11 present videos"):
        sample_episodes(_videos(), EpisodeSpec(5, 10, 1, 10, seed=0))
