"""A run's identity: every setting that changes a number gives a record of its own (variants
~HASH and +TAG), and no identity depends on where the cache, data or weights are mounted."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from conftest import TINY_SYNTH
from fsarbench.benchmarks.registry import get_benchmark
from fsarbench.cli import main
from fsarbench.registry import MODELS
from fsarbench.results import load_records
from fsarbench.runs import RunRequest, SuiteOptions, resolve_run, run_one
from fsarbench.training import pretrain_dir, work_root

TINY = "seed=3,videos_per_class=3,frames=8,size=32"
SYNTH = get_benchmark("synth")
RUN = ["run", "--methods", "protonet", "--shots", "1", "--seeds", "0", "--episodes", "20"]
RUN += ["--train", "none", "--synth", TINY]


@pytest.fixture
def home(tiny_synth_home, monkeypatch):
    monkeypatch.setenv("FSARBENCH_HOME", str(tiny_synth_home))
    return tiny_synth_home


def options(results, **kw):
    kw.setdefault("training", "none")
    return SuiteOptions(results_dir=results, progress=False, synth=TINY_SYNTH, **kw)


def record_files(results):
    runs = results / "runs"
    return sorted(p.relative_to(runs).as_posix() for p in runs.rglob("*.json"))


def test_a_changed_setting_is_a_run_of_its_own(home, tmp_path, capsys):
    results = tmp_path / "results"
    assert main([*RUN, "--results-dir", str(results)]) == 0
    default = record_files(results)
    assert (
        main([*RUN, "--results-dir", str(results), "--cfg-options", "method.temperature=5.0"]) == 0
    )
    changed = sorted(set(record_files(results)) - set(default))
    assert len(changed) == 1 and changed[0].split("/")[1].startswith("protonet~")
    records = {r.method + r.variant: r for r in load_records(results)}
    variant = changed[0].split("/")[1]
    assert records[variant].settings == {"method.temperature": 5.0}
    assert records["protonet"].settings == {} and records["protonet"].variant == ""
    assert records[variant].config_hash != records["protonet"].config_hash
    # the default record is untouched, and each is reused by its own command
    assert main([*RUN, "--results-dir", str(results)]) == 0
    assert "skipped, record exists" in capsys.readouterr().out
    # another --queries is another protocol setting: a record of its own too
    assert main([*RUN, "--results-dir", str(results), "--queries", "2"]) == 0
    queries = {r.variant: r.settings for r in load_records(results) if r.queries_per_class == 2}
    assert list(queries.values()) == [{"protocol.queries_per_class_test": 2}]

    assert main(["report", "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    assert f"| {variant}" in out and "| protonet " in out
    assert f"{variant}: method.temperature=5.0" in out  # what differs, named
    assert "protocol.queries_per_class_test=2" in out


def test_a_tag_names_an_ablation_row_and_keeps_its_meaning(home, tmp_path, capsys):
    results = tmp_path / "results"
    argv = [*RUN, "--results-dir", str(results), "--tag", "temp5"]
    assert main([*argv, "--cfg-options", "method.temperature=5.0"]) == 0
    (record,) = load_records(results)
    assert (record.variant, record.settings) == ("+temp5", {"method.temperature": 5.0})
    assert main(["report", "--results-dir", str(results)]) == 0
    assert "| protonet+temp5" in capsys.readouterr().out
    # the same tag for other settings is refused before anything runs: a tag keeps its meaning
    before = next((results / "runs").rglob("*.json")).read_bytes()
    assert main([*argv, "--cfg-options", "method.temperature=2.0"]) == 2
    err = capsys.readouterr().err
    assert "--tag temp5" in err and "method.temperature=5.0" in err and "another --tag" in err
    assert "Traceback" not in err
    assert next((results / "runs").rglob("*.json")).read_bytes() == before
    # ... unless it is asked to replace it
    assert main([*argv, "--cfg-options", "method.temperature=2.0", "--force"]) == 0
    (record,) = load_records(results)
    assert record.settings == {"method.temperature": 2.0}


@pytest.mark.parametrize("tag", ["", "a b", "-x", "x/y", "t" * 41])
def test_a_tag_that_cannot_name_a_folder_is_refused(home, tmp_path, capsys, tag):
    assert main([*RUN, "--results-dir", str(tmp_path / "r"), f"--tag={tag}"]) == 2
    err = capsys.readouterr().err
    assert "is not a tag" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def save_backbone(path, seed):
    torch.manual_seed(seed)
    backbone = MODELS.build(dict(type="FrameResNet", depth=18, num_stages=3))
    torch.save(backbone.state_dict(), path)
    return path


def test_weights_enter_a_run_by_content_not_by_path(home, tmp_path):
    first = save_backbone(tmp_path / "a.pth", 1)
    other = save_backbone(tmp_path / "b.pth", 2)
    moved = tmp_path / "elsewhere" / "a-copy.pth"
    moved.parent.mkdir()
    shutil.copy(first, moved)
    request = RunRequest("protonet", "synth", None, 1, 0, 20)
    runs = [resolve_run(request, options(tmp_path, weights=w)) for w in (first, moved, other)]
    assert runs[0].path == runs[1].path and runs[0].digest == runs[1].digest
    assert runs[2].path != runs[0].path and runs[2].digest != runs[0].digest
    assert set(runs[0].settings) == {"weights_sha256"}
    default = resolve_run(request, options(tmp_path))
    assert default.variant == "" and runs[0].variant.startswith("~")


def test_a_cache_mounted_elsewhere_is_reused(home, tmp_path, monkeypatch):
    first_home, second_home = tmp_path / "node1" / "cache", tmp_path / "node2" / "mnt" / "cache"
    shutil.copytree(home, first_home)
    monkeypatch.setenv("FSARBENCH_HOME", str(first_home))
    request = RunRequest("protonet", "synth", None, 1, 0, 20)
    first = run_one("protonet", SYNTH, None, 1, 0, 20, None, options(tmp_path / "r1"))
    trained = options(tmp_path / "r1", training="frozen")
    first_run = resolve_run(request, trained)
    first_stage = pretrain_dir(first_run.config, first_run.data, 0, "w", 1)
    first_stage = first_stage.relative_to(work_root())

    shutil.copytree(first_home, second_home)
    shutil.rmtree(first_home)  # nothing of the first path is left to read
    monkeypatch.setenv("FSARBENCH_HOME", str(second_home))
    second = run_one("protonet", SYNTH, None, 1, 0, 20, None, options(tmp_path / "r2"))
    assert second.record.config_hash == first.record.config_hash
    assert second.record.embed_frame_forwards == 0  # the stored features, found at the new path
    assert second.record.episode_accuracies == first.record.episode_accuracies
    second_run = resolve_run(request, trained)
    assert second_run.digest == first_run.digest
    second_stage = pretrain_dir(second_run.config, second_run.data, 0, "w", 1)
    second_stage = second_stage.relative_to(work_root())
    assert second_stage == first_stage
    manifest = json.loads(next(second_home.rglob("prepared.json")).read_text())
    assert len(manifest["media_digest"]) == 64
