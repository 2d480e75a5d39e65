"""``data prepare`` on stand-in trees that copy each real layout with tiny videos named after
real split ids."""

from __future__ import annotations

import json

import pytest

from conftest import split_source
from fsarbench.benchmarks.prepare import (
    MANIFEST,
    format_coverage,
    prepare_benchmark,
    prepared_folder,
    require_prepared,
)
from fsarbench.benchmarks.registry import SPLITS, get_benchmark
from fsarbench.benchmarks.splits import store_splits
from fsarbench.benchmarks.standin import (
    make_standin_tree,
    write_tiny_video,
    write_zero_frame_video,
)
from fsarbench.errors import FsarbenchError

LAYOUTS = [
    ("ssv2-full", "{id}", ".webm"),
    ("ssv2-small", "{id}", ".mp4"),
    ("k100", "{id}", ".mp4"),
    ("k100", "{cls}/{id}", ".mp4"),
    ("k100", "{cls_}/{id}", ".mp4"),
    ("ucf101", "{cls}/{id}", ".avi"),
    ("hmdb51", "{cls}/{id}", ".avi"),
]


def _replace(path, writer):
    path.unlink()  # stand-ins of one class share an inode: never write through the link
    writer(path)


@pytest.mark.parametrize("name, pattern, extension", LAYOUTS)
def test_prepare_matches_reports_and_writes_lists(tmp_path, name, pattern, extension):
    benchmark = get_benchmark(name)
    lists = store_splits(benchmark, split_source(name)).lists
    root = tmp_path / "videos"
    chosen = make_standin_tree(
        benchmark,
        lists,
        root,
        classes_per_split=3,
        per_class=2,
        pattern=pattern,
        extension=extension,
    )

    def path_of(entry):
        underscored = entry.class_name.replace(" ", "_")
        relative = pattern.format(id=entry.video_id, cls=entry.class_name, cls_=underscored)
        return root / (relative + extension)

    corrupt, empty = chosen["test"][0], chosen["val"][1]
    _replace(path_of(corrupt), lambda p: p.write_bytes(b"\x00garbage" * 50))
    _replace(path_of(empty), write_zero_frame_video)
    # A video no split names: in a train class folder where the layout has class folders.
    stray_class = chosen["train"][0].class_name
    stray = root / (
        pattern.format(id="zz_not_listed", cls=stray_class, cls_=stray_class.replace(" ", "_"))
        + extension
    )
    write_tiny_video(stray, (10, 20, 30))

    prepared = prepare_benchmark(benchmark, lists, root, prepared_folder(benchmark), progress=False)

    for split in SPLITS:
        coverage = prepared.splits[split]
        broken = sum(entry in (corrupt, empty) for entry in chosen[split])
        assert coverage.expected == lists[split].n_videos
        assert coverage.present == len(chosen[split]) - broken
        assert coverage.missing == lists[split].n_videos - len(chosen[split])
        assert coverage.unusable == broken
        lines = (prepared_folder(benchmark) / f"{split}.txt").read_text().splitlines()
        assert len(lines) == coverage.present
        classes = lists[split].classes
        for line in lines:
            relative, label = line.split("\t")
            assert (root / relative).is_file()
            folder = classes[int(label)]
            assert "/" not in pattern or relative.split("/")[0] in (
                folder,
                folder.replace(" ", "_"),
            )
    assert [
        u["path"].endswith(corrupt.video_id + extension)
        for u in prepared.splits["test"].unusable_examples
    ] == [True]
    assert "cannot be decoded" in prepared.splits["test"].unusable_examples[0]["reason"]
    # An mp4 muxer drops a track without frames; other containers keep an empty stream.
    reason = prepared.splits["val"].unusable_examples[0]["reason"]
    assert "zero-frame" in reason or "no video stream" in reason
    if "/" in pattern:
        assert prepared.splits["train"].unexpected == 1
    else:
        assert prepared.unassigned == 1
    report = format_coverage(prepared)
    assert "unusable (test)" in report and corrupt.video_id in report
    assert "missing (test)" in report
    stored = json.loads((prepared_folder(benchmark) / MANIFEST).read_text())
    assert stored["splits"]["test"]["present"] == prepared.splits["test"].present


def test_kinetics_report_counts_missing_youtube_videos(tmp_path):
    benchmark = get_benchmark("k100")
    lists = store_splits(benchmark, split_source("k100")).lists
    root = tmp_path / "k100"
    make_standin_tree(benchmark, lists, root, classes_per_split=24, per_class=1)
    prepared = prepare_benchmark(
        benchmark, lists, root, prepared_folder(benchmark), probe=False, progress=False
    )
    assert prepared.splits["test"].missing == 2400 - 24
    assert "missing (test)" in format_coverage(prepared)
    assert "and 2371 more" in format_coverage(prepared)


def test_frame_folders(tmp_path):
    benchmark = get_benchmark("ucf101")
    lists = store_splits(benchmark, split_source("ucf101")).lists
    root = tmp_path / "frames"
    chosen = make_standin_tree(
        benchmark, lists, root, classes_per_split=2, per_class=2, media="frames"
    )
    misnamed = chosen["test"][0]
    for image in (root / misnamed.class_name / misnamed.video_id).iterdir():
        image.rename(image.with_name(image.name.replace("img_", "frame_")))
    prepared = prepare_benchmark(
        benchmark, lists, root, prepared_folder(benchmark), media="frames", progress=False
    )
    assert prepared.splits["train"].present == 4
    assert prepared.splits["test"].present == 3 and prepared.splits["test"].unusable == 1
    assert "img_00001.jpg" in prepared.splits["test"].unusable_examples[0]["reason"]
    line = (prepared_folder(benchmark) / "train.txt").read_text().splitlines()[0]
    relative, frames, label = line.split("\t")
    assert frames == "12" and label == "0" and (root / relative / "img_00001.jpg").is_file()


def test_missing_videos_folder_writes_nothing(tmp_path):
    benchmark = get_benchmark("hmdb51")
    lists = store_splits(benchmark, split_source("hmdb51")).lists
    with pytest.raises(FsarbenchError) as error:
        prepare_benchmark(benchmark, lists, tmp_path / "absent", prepared_folder(benchmark))
    assert "--videos" in error.value.problem and "no such folder" in error.value.problem
    assert ".avi" in error.value.fix
    assert not prepared_folder(benchmark).exists()
    assert sorted(p.name for p in prepared_folder(benchmark).parent.iterdir()) == ["splits"]


def test_folder_without_any_video(tmp_path):
    benchmark = get_benchmark("ucf101")
    lists = store_splits(benchmark, split_source("ucf101")).lists
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(FsarbenchError, match="holds no videos"):
        prepare_benchmark(benchmark, lists, tmp_path, prepared_folder(benchmark))
    assert not prepared_folder(benchmark).exists()


def test_not_prepared_yet_says_how():
    with pytest.raises(FsarbenchError) as error:
        require_prepared(get_benchmark("ucf101"))
    assert "fsarbench data prepare ucf101 --videos DIR" in error.value.fix
