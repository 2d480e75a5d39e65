"""`fsarbench run` end to end on a tiny synth: records, resumption, identity, bad input."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import TINY_SYNTH
from fsarbench.benchmarks.registry import get_benchmark
from fsarbench.cli import main
from fsarbench.errors import FsarbenchError
from fsarbench.methods import FewShotRecognizer
from fsarbench.names import registered_methods, resolve_methods
from fsarbench.registry import MODELS
from fsarbench.results import load_records
from fsarbench.runs import SuiteOptions, run_one
from fsarbench.stats import mean_and_ci95

TINY = "seed=3,videos_per_class=3,frames=8,size=32"
SYNTH = get_benchmark("synth")


@pytest.fixture
def home(tiny_synth_home, monkeypatch):
    monkeypatch.setenv("FSARBENCH_HOME", str(tiny_synth_home))
    return tiny_synth_home


def options(tmp_path, **kw):
    kw.setdefault("training", "none")  # training has its own tests (test_training.py)
    return SuiteOptions(results_dir=tmp_path / "results", progress=False, synth=TINY_SYNTH, **kw)


def run(method, tmp_path, seed=0, episodes=40, **kw):
    return run_one(method, SYNTH, None, 1, seed, episodes, None, options(tmp_path, **kw))


def test_a_run_writes_a_complete_record(home, tmp_path):
    outcome = run("protonet", tmp_path)
    record = outcome.record
    assert not outcome.skipped and outcome.path.is_file()
    assert (record.method, record.n_way, record.k_shot, record.n_episodes) == ("protonet", 5, 1, 40)
    assert record.benchmark == f"synth-{TINY_SYNTH.fingerprint}" and record.split == "test"
    assert len(record.episode_accuracies) == 40
    assert (record.acc_mean, record.acc_ci95) == pytest.approx(
        mean_and_ci95(record.episode_accuracies)
    )
    assert 0 <= record.acc_mean <= 100 and record.embed_frame_forwards == 72 * 8
    for digest in (record.episode_set_hash, record.config_hash, record.backbone_weights_hash):
        assert len(digest) == 64
    assert record.versions["torch"] and record.protocol_name == "synth-5way"
    stored = json.loads(outcome.path.read_text())
    assert stored["acc_mean"] == record.acc_mean and isinstance(stored["acc_ci95"], float)


def test_existing_records_are_skipped_unless_forced(home, tmp_path):
    first = run("protonet", tmp_path)
    again = run("protonet", tmp_path)
    assert again.skipped and again.record.episode_accuracies == first.record.episode_accuracies
    forced = run("protonet", tmp_path, force=True)
    assert not forced.skipped
    assert forced.record.episode_accuracies == first.record.episode_accuracies
    assert forced.record.embed_frame_forwards == 0  # the features were stored by the first run


def test_two_runs_of_one_command_give_identical_accuracies(home, tmp_path, monkeypatch):
    first = run("protonet", tmp_path / "a").record
    monkeypatch.setenv("FSARBENCH_HOME", str(tmp_path / "fresh-home"))
    from fsarbench.benchmarks.synth import generate_synth

    generate_synth(TINY_SYNTH, progress=False)
    second = run("protonet", tmp_path / "b").record
    assert second.episode_accuracies == first.episode_accuracies
    assert second.episode_set_hash == first.episode_set_hash
    assert second.backbone_weights_hash == first.backbone_weights_hash


def test_per_episode_path_gives_the_same_record_numbers(home, tmp_path):
    cached = run("protonet", tmp_path / "cached", episodes=15).record
    naive = run("protonet", tmp_path / "naive", episodes=15, feature_cache=False).record
    assert naive.episode_accuracies == cached.episode_accuracies
    assert naive.embed_frame_forwards == 15 * 10 * 8 and not naive.feature_cache


class NearestShot(FewShotRecognizer):
    """A second method, defined here: logits are minus the distance to the nearest shot."""

    paper = "test method"

    def head(self, support, support_labels, query):
        distances = torch.cdist(query.mean(1), support.mean(1))  # [Q, S]
        n_way = int(support_labels.max()) + 1
        return torch.stack(
            [-distances[:, support_labels == n].min(1).values for n in range(n_way)], dim=1
        )


def test_a_second_method_sees_the_identical_episode_set(home, tmp_path, monkeypatch):
    # registered for this test only: other tests list every registered method
    monkeypatch.setitem(MODELS.module_dict, "nearest_shot", NearestShot)
    configs = tmp_path / "my_configs" / "nearest_shot"
    configs.mkdir(parents=True)
    (configs / "nearest_shot.py").write_text('method = dict(type="nearest_shot")\n')
    monkeypatch.setenv("FSARBENCH_CONFIG_PATH", str(tmp_path / "my_configs"))
    assert "nearest_shot" in resolve_methods("all")
    protonet = run("protonet", tmp_path, seed=1).record
    nearest = run("nearest_shot", tmp_path, seed=1).record
    assert nearest.episode_set_hash == protonet.episode_set_hash
    # synth's classes come in order twins: every synth record splits its queries by them.
    pairs, others = protonet.breakdown["order_pairs"], protonet.breakdown["no_twin_in_episode"]
    assert pairs["queries"] > 0 and pairs["queries"] + others["queries"] == protonet.n_episodes * 5
    assert nearest.backbone_weights_hash == protonet.backbone_weights_hash
    assert nearest.embed_frame_forwards == 0  # same backbone checkpoint: features shared
    assert run("protonet", tmp_path, seed=2).record.episode_set_hash != protonet.episode_set_hash


def test_method_names_resolve_through_the_registry():
    everything = resolve_methods("all")  # every registered method's main config
    assert "protonet" in everything and "protonet_cos_mean" not in everything
    assert everything == sorted(registered_methods())
    assert resolve_methods("protonet_cos*") == ["protonet_cos_framewise", "protonet_cos_mean"]
    assert resolve_methods("protonet, protonet") == ["protonet"]
    with pytest.raises(FsarbenchError) as error:
        resolve_methods("protonett")
    assert "protonet_tsn_ln_dot" in error.value.fix


def test_weights_from_a_file(home, tmp_path):
    torch.manual_seed(7)
    model = MODELS.build(
        dict(type="protonet", backbone=dict(type="FrameResNet", depth=18, num_stages=3))
    )
    good = tmp_path / "backbone.pth"
    torch.save(model.backbone.state_dict(), good)
    record = run("protonet", tmp_path, weights=good).record
    assert record.weights_file == str(good.resolve())

    wrong = tmp_path / "resnet18_full.pth"
    other = MODELS.build(dict(type="FrameResNet", depth=18, num_stages=4))
    torch.save(other.state_dict(), wrong)
    with pytest.raises(FsarbenchError) as error:
        run("protonet", tmp_path, weights=wrong, force=True)
    assert "does not fit the backbone" in error.value.problem
    assert "unexpected: resnet.layer4" in error.value.problem

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(FsarbenchError, match="cannot be read as a state dict"):
        run("protonet", tmp_path, weights=garbage, force=True)


def test_cli_run_then_report(home, tmp_path, capsys):
    results = tmp_path / "results"
    code = main(
        [
            "run",
            "--train",
            "none",
            "--methods",
            "protonet,protonet_cos_framewise",
            "--synth",
            TINY,
            "--shots",
            "1",
            "--seeds",
            "0,1",
            "--episodes",
            "30",
            "--results-dir",
            str(results),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("5-way 1-shot seed") == 4 and "(30 episodes," in out
    assert "(2×30, sd " in out and "**" in out
    assert len(load_records(results)) == 4

    assert (
        main(
            [
                "run",
                "--train",
                "none",
                "--methods",
                "protonet",
                "--synth",
                TINY,
                "--shots",
                "1",
                "--episodes",
                "30",
                "--results-dir",
                str(results),
            ]
        )
        == 0
    )
    assert "skipped, record exists" in capsys.readouterr().out

    for fmt, marker in (
        ("md", "| method"),
        ("latex", "\\toprule"),
        ("html", "<table"),
        ("csv", "acc_mean"),
    ):
        assert main(["report", "--results-dir", str(results), "--format", fmt]) == 0
        assert marker in capsys.readouterr().out
    out_file = tmp_path / "board.md"
    assert main(["report", "--results-dir", str(results), "--out", str(out_file)]) == 0
    assert "protonet_cos_framewise" in out_file.read_text()


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["run", "--methods", "otam9"], "unknown method 'otam9'"),
        (["run", "--datasets", "ssv9"], "unknown benchmark 'ssv9'"),
        (["run", "--synth", TINY, "--shots", "5"], "only 0 classes have at least 6"),
        (["run", "--synth", TINY, "--datasets", "ucf101"], "synth is not among the benchmarks"),
        (["run", "--weights", "/nonexistent.pth"], "no such file"),
        (["run", "--synth", TINY, "--ways", "1"], "--ways 1 is out of range"),
        (["report", "--results-dir", "/nonexistent"], "no result records"),
    ],
)
def test_bad_input_exits_2_with_one_message(home, capsys, argv, fragment):
    assert main(argv) == 2
    assert fragment in capsys.readouterr().err
