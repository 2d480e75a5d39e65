from __future__ import annotations

import hashlib
import itertools
from collections import Counter

import numpy as np
import pytest

from conftest import TINY_SYNTH
from fsarbench.benchmarks.prepare import load_prepared
from fsarbench.benchmarks.registry import SPLITS
from fsarbench.benchmarks.synth import (
    PRIMITIVES,
    SynthConfig,
    VideoJob,
    generate_synth,
    make_classes,
    render_video,
)
from fsarbench.errors import FsarbenchError


def _tree_digest(root):
    """sha256 of every file below root, by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_classes_are_64_12_24_order_pairs():
    classes = make_classes(SynthConfig())
    assert [len(classes[s]) for s in SPLITS] == [64, 12, 24]
    every = [c for s in SPLITS for c in classes[s]]
    assert len(set(every)) == 100
    for split in SPLITS:
        # every class has a partner in the same split made of the same primitives in another order
        by_set = Counter(frozenset(c) for c in classes[split])
        assert set(by_set.values()) == {2}
        for first, second in zip(classes[split][::2], classes[split][1::2], strict=True):
            assert sorted(first) == sorted(second) and first != second
    assert all(p in PRIMITIVES for c in every for p in c)


def test_same_seed_same_files_and_frames(tmp_path, monkeypatch):
    roots = []
    for run in ("a", "b"):
        monkeypatch.setenv("FSARBENCH_HOME", str(tmp_path / run))
        roots.append(generate_synth(TINY_SYNTH, progress=False))
    first, second = (_tree_digest(root) for root in roots)
    annotation = {k: v for k, v in first.items() if k.startswith(("prepared/", "splits/"))}
    assert annotation and all(second[k] == v for k, v in annotation.items())
    videos = [k for k in first if k.endswith(".mp4")]
    assert len(videos) == 100 * TINY_SYNTH.videos_per_class
    assert all(first[k] == second[k] for k in videos)
    assert first.keys() == second.keys()

    import decord

    one = sorted(videos)[0]
    frames = [decord.VideoReader(str(root / one)).get_batch(range(8)).asnumpy() for root in roots]
    assert frames[0].shape == (8, 32, 32, 3) and np.array_equal(frames[0], frames[1])


def test_other_seed_other_benchmark(tmp_path, monkeypatch):
    monkeypatch.setenv("FSARBENCH_HOME", str(tmp_path))
    a = make_classes(SynthConfig(seed=0))
    b = make_classes(SynthConfig(seed=1))
    assert a != b
    job = VideoJob("unused.mp4", ("move left", "grow", "rotate cw"), (0, 0, 0, 0))
    other = VideoJob("unused.mp4", ("move left", "grow", "rotate cw"), (1, 0, 0, 0))
    config = SynthConfig(size=32, frames=8)
    assert not np.array_equal(render_video(job, config), render_video(other, config))
    assert np.array_equal(render_video(job, config), render_video(job, config))


def test_order_pairs_differ_only_by_time_order():
    """With every nuisance off, the two classes of a pair pass through the same states."""
    config = SynthConfig(
        size=32, frames=16, misalignment=0, tempo_warp=0, spatial_jitter=0, appearance=0
    )
    forward = render_video(VideoJob("x", ("grow", "rotate cw"), (0,)), config)
    backward = render_video(VideoJob("x", ("rotate cw", "grow"), (0,)), config)
    assert np.array_equal(forward[0], backward[0])  # same start state
    assert np.abs(forward[-1].astype(int) - backward[-1].astype(int)).mean() < 1.0  # same end
    assert np.abs(forward[8].astype(int) - backward[8].astype(int)).mean() > 1.0  # other middle


def test_knobs_change_the_videos():
    job = VideoJob("x", ("move left", "move up", "grow"), (5,))
    base = SynthConfig(size=32, frames=8)
    rendered = {
        knob: render_video(job, SynthConfig(size=32, frames=8, **{knob: 0.0}))
        for knob in ("misalignment", "tempo_warp", "spatial_jitter", "appearance")
    }
    reference = render_video(job, base)
    for knob, frames in rendered.items():
        assert not np.array_equal(frames, reference), knob


def test_generated_once_then_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("FSARBENCH_HOME", str(tmp_path))
    root = generate_synth(TINY_SYNTH, progress=False)
    stamp = (root / "prepared" / "prepared.json").stat().st_mtime_ns
    assert generate_synth(TINY_SYNTH, progress=False) == root
    assert (root / "prepared" / "prepared.json").stat().st_mtime_ns == stamp
    prepared = load_prepared(root / "prepared")
    assert [prepared.splits[s].present for s in SPLITS] == [192, 36, 72]
    assert all(prepared.splits[s].missing == 0 for s in SPLITS)


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"videos_per_class": 1}, "videos_per_class"),
        ({"frames": 4}, "frames"),
        ({"size": 31}, "size"),
        ({"tempo_warp": 1.5}, "tempo_warp"),
        ({"primitives_per_class": 9}, "primitives_per_class"),
    ],
)
def test_invalid_settings(change, fragment):
    with pytest.raises(FsarbenchError, match=fragment):
        generate_synth(SynthConfig(**change), progress=False)


def test_two_primitives_are_too_few_for_50_pairs():
    with pytest.raises(FsarbenchError, match="fewer than the 50 class pairs"):
        make_classes(SynthConfig(primitives_per_class=2))


def test_class_names_read_as_sequences():
    names = [", then ".join(c) for c in itertools.chain(*make_classes(SynthConfig()).values())]
    assert all(name.count(", then ") == 2 for name in names)
