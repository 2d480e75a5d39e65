from __future__ import annotations

import shutil
import urllib.error

import pytest

from conftest import split_source
from fsarbench.benchmarks.registry import get_benchmark
from fsarbench.benchmarks.splits import (
    check_disjoint,
    load_stored_splits,
    parse_split_text,
    splits_folder,
    store_splits,
)
from fsarbench.errors import FsarbenchError

EXPECTED = {
    "ssv2-full": [(64, 77500), (12, 1926), (24, 2857)],
    "ssv2-small": [(64, 6400), (12, 1200), (24, 2400)],
    "k100": [(64, 6400), (12, 1200), (24, 2400)],
    "ucf101": [(70, 9154), (10, 1421), (21, 2745)],
    "hmdb51": [(31, 4280), (10, 1194), (10, 1292)],
}


def test_lines_split_on_the_last_slash():
    text = (
        "Twisting (wringing) something wet until water comes out/88644\n"
        "Tipping something with something in it over, so something in it falls out/12\n"
        "hurling (sport)/-VtLx-mcPds_000012_000022\n"
        "cartwheel/(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0\n"
    )
    entries = parse_split_text(text, "x")
    assert [(e.class_name, e.video_id) for e in entries] == [
        ("Twisting (wringing) something wet until water comes out", "88644"),
        ("Tipping something with something in it over, so something in it falls out", "12"),
        ("hurling (sport)", "-VtLx-mcPds_000012_000022"),
        ("cartwheel", "(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0"),
    ]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("classonly\n", "not of the form"),
        ("class/\n", "not of the form"),
        ("/123\n", "not of the form"),
        ("a/1\r\nb/2\r\n", "carriage return"),
        ("a/1\n\nb/2\n", "empty or has leading/trailing whitespace"),
        (" a/1\n", "empty or has leading/trailing whitespace"),
        ("a/1\nb/1\n", "repeats video id '1'"),
        ("../../etc/passwd\n", "outside the videos folder"),
        ("a/..\n", "outside the videos folder"),
        ("a//b/1\n", "outside the videos folder"),
        ("a\\..\\b/1\n", "outside the videos folder"),
        ("", "is empty"),
    ],
)
def test_malformed_lines_name_file_line_and_fix(text, fragment):
    with pytest.raises(FsarbenchError) as error:
        parse_split_text(text, "lists/train.list")
    assert fragment in error.value.problem
    assert error.value.problem.startswith("lists/train.list")
    assert error.value.fix


def test_splits_must_be_disjoint():
    from fsarbench.benchmarks.splits import SplitList

    train = SplitList("train", tuple(parse_split_text("a/1\nb/2\n", "t")))
    test = SplitList("test", tuple(parse_split_text("c/2\n", "t")))
    with pytest.raises(FsarbenchError, match="video '2' is in both"):
        check_disjoint({"train": train, "test": test}, "bench")


@pytest.mark.parametrize("name", list(EXPECTED))
def test_import_from_folder_verifies_and_stores(name):
    benchmark = get_benchmark(name)
    stored = store_splits(benchmark, split_source(name))
    counts = [
        (stored.lists[s].n_classes, stored.lists[s].n_videos) for s in ("train", "val", "test")
    ]
    assert counts == EXPECTED[name]
    reloaded = load_stored_splits(benchmark)
    assert reloaded.lists["test"].entries == stored.lists["test"].entries


def test_ssv2_full_classes_are_indices_in_natural_order():
    stored = store_splits(get_benchmark("ssv2"), split_source("ssv2-full"))
    assert stored.lists["train"].classes[:3] == ["train0", "train1", "train2"]
    assert stored.lists["test"].classes[-1] == "test23"


def _leftovers(benchmark):
    parent = splits_folder(benchmark).parent
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


def test_wrong_checksum_is_refused_and_nothing_is_written(tmp_path):
    benchmark = get_benchmark("k100")
    source = tmp_path / "lists"
    shutil.copytree(split_source("k100"), source)
    test_list = source / "test.list"
    lines = test_list.read_text().splitlines(keepends=True)
    test_list.write_text("".join(lines[:-1]))  # one video dropped, every line still well-formed
    with pytest.raises(FsarbenchError) as error:
        store_splits(benchmark, source)
    assert str(source / "test.list") in error.value.problem and "sha256" in error.value.problem
    assert "not comparable" in error.value.fix
    assert _leftovers(benchmark) == []


def test_malformed_line_in_an_imported_file(tmp_path):
    benchmark = get_benchmark("hmdb51")
    source = tmp_path / "lists"
    shutil.copytree(split_source("hmdb51"), source)
    with open(source / "vallist03.txt", "a") as handle:
        handle.write("no slash here\n")
    with pytest.raises(FsarbenchError, match=r"vallist03.txt, line 1195: 'no slash here'"):
        store_splits(benchmark, source)
    assert _leftovers(benchmark) == []


def test_a_failed_import_keeps_the_previous_good_copy(tmp_path):
    benchmark = get_benchmark("ucf101")
    store_splits(benchmark, split_source("ucf101"))
    source = tmp_path / "lists"
    shutil.copytree(split_source("ucf101"), source)
    (source / "testlist03.txt").write_text("a/1\n")
    with pytest.raises(FsarbenchError):
        store_splits(benchmark, source)
    assert load_stored_splits(benchmark).lists["test"].n_videos == 2745
    assert _leftovers(benchmark) == ["splits"]


def test_missing_file_and_missing_folder(tmp_path):
    benchmark = get_benchmark("ssv2-small")
    (tmp_path / "train.list").write_text("a/1\n")
    with pytest.raises(FsarbenchError, match=r"val\.list, test\.list are missing"):
        store_splits(benchmark, tmp_path)
    with pytest.raises(FsarbenchError, match="no such folder"):
        store_splits(benchmark, tmp_path / "nowhere")
    assert _leftovers(benchmark) == []


def test_download_failure_says_what_to_do_offline():
    def offline(url, destination):
        raise urllib.error.URLError("Name or service not known")

    benchmark = get_benchmark("k100")
    with pytest.raises(FsarbenchError) as error:
        store_splits(benchmark, fetch=offline)
    assert "could not download https://raw.githubusercontent.com/ffmpbgrnn/CMN/" in str(error.value)
    assert "--from FOLDER" in error.value.fix
    assert _leftovers(benchmark) == []


def test_download_path_verifies_what_it_fetched():
    source = split_source("ucf101")

    def from_mirror(url, destination):
        destination.write_bytes((source / url.rsplit("/", 1)[1]).read_bytes())

    stored = store_splits(get_benchmark("ucf101"), fetch=from_mirror)
    assert stored.lists["train"].n_videos == 9154


def test_stored_splits_absent():
    with pytest.raises(FsarbenchError) as error:
        load_stored_splits(get_benchmark("hmdb51"))
    assert "fsarbench data splits hmdb51" in error.value.fix


def test_a_stored_file_edited_later_is_caught():
    benchmark = get_benchmark("hmdb51")
    stored = store_splits(benchmark, split_source("hmdb51"))
    path = stored.folder / "testlist03.txt"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join([lines[1], lines[0], *lines[2:]]))  # same lines, other order
    with pytest.raises(FsarbenchError, match="sha256"):
        load_stored_splits(benchmark)
