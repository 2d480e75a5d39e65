"""The regression gate (fsarbench.gate, `fsarbench check`)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import TINY_SYNTH, make_record, write_records
from fsarbench.benchmarks.registry import get_benchmark
from fsarbench.cli import main
from fsarbench.errors import FsarbenchError
from fsarbench.gate import check_results, load_baseline, write_baseline
from fsarbench.methods.protonet import ProtoNet
from fsarbench.runs import SuiteOptions, run_one

RNG = np.random.default_rng(0)
EPISODES = RNG.integers(0, 6, 400) / 5  # 400 episodes of 5 queries, accuracy in fifths


def degraded(accuracies, share, generator=RNG):
    """Every episode loses one correct query with probability ``share``."""
    loses = (generator.uniform(size=len(accuracies)) < share) & (np.asarray(accuracies) > 0)
    return np.where(loses, np.asarray(accuracies) - 0.2, accuracies)


def suite(accuracies_by_method, seeds=(0, 1), **kw):
    return [
        make_record(method, accuracies, seed=seed, **kw)
        for method, accuracies in accuracies_by_method.items()
        for seed in seeds
    ]


def test_an_unchanged_suite_passes_and_a_degraded_method_fails():
    baseline = suite({"protonet": EPISODES, "otam": EPISODES})
    rows = check_results(suite({"protonet": EPISODES, "otam": EPISODES}), baseline)
    assert [row.status for row in rows] == ["ok", "ok"]
    current = suite({"protonet": EPISODES, "otam": degraded(EPISODES, 0.3)})
    by_method = {row.method: row for row in check_results(current, baseline)}
    assert by_method["otam"].status == "REGRESSION" and by_method["otam"].failed
    assert by_method["otam"].difference == pytest.approx(-6, abs=1.5)
    assert by_method["protonet"].status == "ok"


def test_noise_within_the_thresholds_passes():
    baseline = suite({"protonet": EPISODES})
    # a small drop: significant with 800 paired episodes, but below the minimum effect
    small = check_results(suite({"protonet": degraded(EPISODES, 0.03)}), baseline)
    assert small[0].difference > -1.0 and small[0].status == "ok"
    # the same drop fails when the minimum effect is lowered below it
    strict = check_results(suite({"protonet": degraded(EPISODES, 0.3)}), baseline, min_effect=0.0)
    assert strict[0].status == "REGRESSION"
    better = check_results(suite({"protonet": np.minimum(EPISODES + 0.2, 1.0)}), baseline)
    assert better[0].status == "improved" and not better[0].failed


def test_missing_runs_stay_visible_and_fail():
    baseline = suite({"protonet": EPISODES, "trx": EPISODES})
    current = suite({"protonet": EPISODES}) + suite({"trx": EPISODES}, seeds=(0,))
    current += suite({"ta2n": EPISODES})
    rows = check_results(current, baseline)
    statuses = {(row.method, row.status) for row in rows}
    assert ("trx", "MISSING") in statuses and ("trx", "ok") in statuses
    assert ("ta2n", "new") in statuses
    missing = next(row for row in rows if row.status == "MISSING")
    assert missing.seeds == "missing seed 1" and missing.failed
    gone = check_results([], baseline)
    assert [row.status for row in gone] == ["MISSING", "MISSING"]


def test_other_protocols_and_episode_sets_are_refused():
    baseline = suite({"protonet": EPISODES})
    with pytest.raises(FsarbenchError, match="protocol synth-5way v2"):
        check_results(suite({"protonet": EPISODES}, protocol_version=2), baseline)
    with pytest.raises(FsarbenchError, match="different episode sets"):
        check_results(suite({"protonet": EPISODES}, episode_set_hash="resampled"), baseline)
    with pytest.raises(FsarbenchError, match="200 episodes"):
        check_results(suite({"protonet": EPISODES[:200]}), baseline)


def test_baseline_round_trip_and_bad_files(tmp_path):
    path = tmp_path / "baseline.json"
    records = suite({"protonet": EPISODES, "otam": EPISODES})
    write_baseline(records, path, "abc123")
    loaded = load_baseline(path)
    assert len(loaded) == 4 and len(path.read_text().splitlines()) == 6  # header, 4 runs, end
    assert sorted(r.episode_accuracies for r in loaded) == sorted(
        r.episode_accuracies for r in records
    )
    assert [row.status for row in check_results(records, loaded)] == ["ok", "ok"]
    with pytest.raises(FsarbenchError, match="does not exist"):
        load_baseline(tmp_path / "nope.json")
    (tmp_path / "broken.json").write_text('{"schema_version": 1, "runs": [')
    with pytest.raises(FsarbenchError, match="not readable JSON"):
        load_baseline(tmp_path / "broken.json")
    (tmp_path / "other.json").write_text(json.dumps({"runs": []}))
    with pytest.raises(FsarbenchError, match="not an fsarbench baseline"):
        load_baseline(tmp_path / "other.json")
    (tmp_path / "partial.json").write_text(
        json.dumps({"schema_version": 1, "runs": [{"method": "protonet"}]})
    )
    with pytest.raises(FsarbenchError, match="run 0 lacks"):
        load_baseline(tmp_path / "partial.json")
    with pytest.raises(FsarbenchError, match="no result records"):
        write_baseline([], tmp_path / "empty.json", None)
    assert not (tmp_path / "empty.json").exists()


def test_check_command_exit_codes(tmp_path, capsys):
    baseline, good, bad = tmp_path / "baseline.json", tmp_path / "good", tmp_path / "bad"
    write_records(suite({"protonet": EPISODES}), good)
    write_records(suite({"protonet": degraded(EPISODES, 0.5)}), bad)
    assert main(["check", "--write-baseline", str(baseline), "--results-dir", str(good)]) == 0
    assert main(["check", "--baseline", str(baseline), "--results-dir", str(good)]) == 0
    assert "passed: 1 rows" in capsys.readouterr().out
    assert main(["check", "--baseline", str(baseline), "--results-dir", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "FAILED: 1 of 1 rows" in out and "expected" in out
    assert (
        main(["check", "--baseline", str(tmp_path / "nope.json"), "--results-dir", str(good)]) == 2
    )
    assert (
        main(["check", "--baseline", str(baseline), "--alpha", "2", "--results-dir", str(good)])
        == 2
    )
    with pytest.raises(SystemExit):  # --baseline and --write-baseline are exclusive
        main(["check", "--baseline", str(baseline), "--write-baseline", str(baseline)])


@pytest.fixture
def home(tiny_synth_home, tmp_path, monkeypatch):
    # a copy: the runs below store features, which other tests expect not to find
    home = tmp_path / "home"
    shutil.copytree(tiny_synth_home, home)
    monkeypatch.setenv("FSARBENCH_HOME", str(home))
    return home


def test_the_gate_catches_a_planted_regression_in_a_real_run(home, tmp_path, monkeypatch):
    def suite_run(results, force=False):
        options = SuiteOptions(
            results_dir=results, progress=False, synth=TINY_SYNTH, training="none", force=force
        )
        for seed in (0, 1):
            run_one("protonet", get_benchmark("synth"), None, 1, seed, 100, None, options)

    baseline = tmp_path / "baseline.json"
    suite_run(tmp_path / "trusted")
    assert (
        main(
            ["check", "--write-baseline", str(baseline), "--results-dir", str(tmp_path / "trusted")]
        )
        == 0
    )
    suite_run(tmp_path / "unchanged")
    assert (
        main(["check", "--baseline", str(baseline), "--results-dir", str(tmp_path / "unchanged")])
        == 0
    )

    # the planted bug: ProtoNet ranks the classes backwards
    original = ProtoNet.compare
    monkeypatch.setattr(ProtoNet, "compare", lambda self, *a: -original(self, *a))
    suite_run(tmp_path / "broken")
    assert (
        main(["check", "--baseline", str(baseline), "--results-dir", str(tmp_path / "broken")]) == 1
    )
