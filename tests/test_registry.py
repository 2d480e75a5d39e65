from __future__ import annotations

import pytest

from conftest import split_source
from fsarbench.benchmarks.registry import BENCHMARKS, SPLITS, get_benchmark
from fsarbench.benchmarks.splits import sha256_of, verify_split_file
from fsarbench.errors import FsarbenchError

REAL = [name for name, b in BENCHMARKS.items() if not b.is_synthetic]


def test_names_and_aliases_resolve():
    assert set(BENCHMARKS) == {"ssv2-full", "ssv2-small", "k100", "ucf101", "hmdb51", "synth"}
    assert get_benchmark("ssv2").name == "ssv2-full"
    assert get_benchmark("kinetics").name == "k100"
    assert get_benchmark(" K100 ").name == "k100"


def test_unknown_benchmark_lists_the_valid_names():
    with pytest.raises(FsarbenchError) as error:
        get_benchmark("ssv3")
    assert "ssv3" in error.value.problem
    for name in BENCHMARKS:
        assert name in error.value.fix
    assert "kinetics" in error.value.fix


@pytest.mark.parametrize("name", REAL)
def test_pinned_sources_are_urls_at_a_full_commit(name):
    benchmark = get_benchmark(name)
    assert [f.split for f in benchmark.splits] == list(SPLITS)
    for split_file in benchmark.splits:
        parts = split_file.url.split("/")
        assert split_file.url.startswith("https://raw.githubusercontent.com/")
        assert len(parts[5]) == 40 and all(c in "0123456789abcdef" for c in parts[5])
        assert parts[-1] == split_file.filename
        assert len(split_file.sha256) == 64


@pytest.mark.parametrize("name", REAL)
def test_pinned_checksums_and_counts_match_the_shared_lists(name):
    benchmark = get_benchmark(name)
    folder = split_source(name)
    for split_file in benchmark.splits:
        path = folder / split_file.filename
        assert sha256_of(path) == split_file.sha256
        split_list = verify_split_file(benchmark, split_file.split, path)
        assert (split_list.n_classes, split_list.n_videos) == (
            split_file.n_classes,
            split_file.n_videos,
        )


@pytest.mark.parametrize(
    "name, candidates",
    [
        ("ssv2-full", ["78687"]),
        (
            "k100",
            ["ab_000001_000011", "air drumming/ab_000001_000011", "air_drumming/ab_000001_000011"],
        ),
        ("ucf101", ["air drumming/ab_000001_000011"]),
    ],
)
def test_layout_candidates(name, candidates):
    video_id = "78687" if name == "ssv2-full" else "ab_000001_000011"
    assert get_benchmark(name).layout.candidates("air drumming", video_id) == candidates
