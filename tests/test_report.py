from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest

from conftest import make_record
from fsarbench.report import leaderboard_long, render_leaderboard
from fsarbench.results import RunRecord
from fsarbench.stats import mean_and_ci95


def record(method, benchmark, k_shot, seed, accuracies):
    return make_record(
        method,
        accuracies,
        seed=seed,
        k_shot=k_shot,
        benchmark=benchmark,
        backbone="resnet50",
        training="none",
        protocol_name="trx-5way",
        episode_set_hash=f"{seed}" * 64,
    )


RECORDS = [
    record("protonet", "ucf101", 1, 0, [0.2, 0.4, 0.6, 0.8]),
    record("protonet", "ucf101", 1, 1, [0.4, 0.4, 0.6, 0.6]),
    record("otam", "ucf101", 1, 0, [0.8, 0.8, 0.6, 1.0]),
    record("protonet", "synth", 5, 0, [1.0, 0.8]),
]


def test_ci95_is_the_trx_convention():
    mean, ci95 = mean_and_ci95([0.0, 1.0, 1.0, 0.0])
    assert mean == 50.0 and ci95 == pytest.approx(100 * 1.96 * 0.5 / 2)
    with pytest.raises(ValueError):
        mean_and_ci95([])


def test_long_table_pools_seeds_and_marks_the_best():
    long = leaderboard_long(RECORDS)
    protonet = long[(long.method == "protonet") & (long.benchmark == "ucf101")].iloc[0]
    assert protonet.acc_mean == pytest.approx(50.0)  # mean of the two seeds' means
    pooled = [0.2, 0.4, 0.6, 0.8, 0.4, 0.4, 0.6, 0.6]
    assert protonet.acc_ci95 == pytest.approx(mean_and_ci95(pooled)[1])
    assert protonet.n_seeds == 2 and protonet.n_episodes_per_seed == 4 and not protonet.best
    assert long[long.method == "otam"].iloc[0].best
    assert list(long.benchmark) == ["ucf101", "ucf101", "synth"]  # registry order


def test_markdown_cells():
    text = render_leaderboard(RECORDS, "md")
    assert "**80.00 ± 13.86** (1×4)" in text
    assert "50.00 ± 12.00†" in text and "(2×4, sd 0.00)" in text  # seeds 0 and 1 both at 50
    assert "ucf101 5-way 1-shot" in text and "synth 5-way 5-shot" in text
    assert "| otam" in text and "–" in text  # otam has no synth run: a dash, not a gap


def test_rows_the_paired_test_cannot_separate_from_the_best_are_marked():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 6, 2000) / 5
    records = [
        record("best", "ucf101", 1, 0, list(np.minimum(base + 0.2, 1.0))),
        record("close", "ucf101", 1, 0, list(np.minimum(base + 0.2, 1.0))),
        record("worse", "ucf101", 1, 0, list(base)),
    ]
    records[1].episode_accuracies[0] = 0.0  # one episode lower: indistinguishable
    records[1].acc_mean -= 0.05
    long = leaderboard_long(records).set_index("method")
    assert long.loc["best", "best"] and not long.loc["best", "tied_with_best"]
    assert long.loc["close", "tied_with_best"] and not long.loc["worse", "tied_with_best"]
    other_episodes = record("elsewhere", "ucf101", 1, 1, list(base))  # seed 1: nothing shared
    assert (
        not leaderboard_long([*records, other_episodes])
        .set_index("method")
        .loc["elsewhere", "tied_with_best"]
    )


def test_csv_is_plain_numbers():
    frame = pd.read_csv(io.StringIO(render_leaderboard(RECORDS, "csv")))
    assert frame["acc_mean"].dtype == np.float64 and frame["n_seeds"].dtype == np.int64
    assert set(frame.columns) >= {"method", "backbone", "benchmark", "k_shot", "acc_ci95", "best"}
    assert not math.isnan(frame["acc_ci95"].iloc[0])


def test_latex_and_html():
    latex = render_leaderboard(RECORDS, "latex")
    assert "\\toprule" in latex and "\\textbf{80.00 $\\pm$ 13.86}" in latex
    html = render_leaderboard(RECORDS, "html")
    assert "<b>80.00 ± 13.86</b>" in html


def test_every_record_field_is_documented():
    from dataclasses import fields

    from conftest import REPO

    documented = (REPO / "results" / "README.md").read_text()
    for field in fields(RunRecord):
        assert f"| `{field.name}` |" in documented, field.name


def with_breakdown(base, pair_acc, pair_queries, twin, other_acc, other_queries):
    base.breakdown = {
        "order_pairs": {
            "queries": pair_queries,
            "acc": pair_acc,
            "acc_ci95": 0.0,
            "twin_predicted": twin,
            "twin_predicted_ci95": 0.0,
        },
        "no_twin_in_episode": {"queries": other_queries, "acc": other_acc, "acc_ci95": 0.0},
    }
    return base


def test_breakdown_pools_seeds_by_query_count():
    from fsarbench.report import breakdown_long, render_breakdown

    records = [
        with_breakdown(record("protonet", "synth", 1, 0, [1.0]), 50.0, 100, 40.0, 80.0, 300),
        with_breakdown(record("protonet", "synth", 1, 1, [1.0]), 70.0, 300, 20.0, 90.0, 100),
        record("protonet", "ucf101", 1, 0, [0.5]),  # no breakdown: left out
    ]
    long = breakdown_long(records)
    assert len(long) == 1
    row = long.iloc[0]
    assert row.order_pair_queries == 400 and row.other_queries == 400
    assert row.order_pair_acc == pytest.approx(65.0)  # (50*100 + 70*300) / 400
    assert row.twin_predicted == pytest.approx(25.0)
    assert row.other_acc == pytest.approx(82.5)
    assert row.order_pair_acc_ci95 == pytest.approx(100 * 1.96 * math.sqrt(0.65 * 0.35 / 400))
    text = render_breakdown(records, "md")
    assert "65.00 ± " in text and "400 / 400" in text
    assert pd.read_csv(io.StringIO(render_breakdown(records, "csv"))).shape[0] == 1


def test_breakdown_without_synth_records_is_a_clear_error():
    from fsarbench.errors import FsarbenchError
    from fsarbench.report import render_breakdown

    with pytest.raises(FsarbenchError, match="no record has an order-pair breakdown"):
        render_breakdown([record("protonet", "ucf101", 1, 0, [0.5])])


def test_plots_are_written_as_png_and_svg_with_every_row_labelled(tmp_path):
    from conftest import make_record
    from fsarbench.plots import write_plots

    records = [
        make_record(method, [0.2 * (i % 6) for i in range(50)], seed=seed, k_shot=shot)
        for method in ("protonet", "otam")
        for shot in (1, 5)
        for seed in (0, 1)
    ]
    written = write_plots(records, tmp_path / "figures")
    names = sorted(p.name for p in written)
    assert names == [
        "accuracy-synth-5way-1shot.png",
        "accuracy-synth-5way-1shot.svg",
        "accuracy-synth-5way-5shot.png",
        "accuracy-synth-5way-5shot.svg",
        "shots-synth-5way.png",
        "shots-synth-5way.svg",
    ]
    assert all(p.stat().st_size > 1000 for p in written)
    assert (tmp_path / "figures" / "accuracy-synth-5way-1shot.png").read_bytes()[:4] == b"\x89PNG"
    svg = (tmp_path / "figures" / "shots-synth-5way.svg").read_text()
    # matplotlib writes text as glyph paths with the string in a comment
    assert "otam (resnet18_synth, pretrain+frozen)" in svg


def test_published_numbers_join_only_the_columns_we_ran():
    from fsarbench.reported import DEFAULT_REPORTED, load_reported

    reported = load_reported(DEFAULT_REPORTED)
    assert set(reported["evidence"]) <= {"read", "memory", "secondary"}
    ta2n = reported[(reported.method == "ta2n") & (reported.benchmark == "ucf101")]
    assert sorted(ta2n["accuracy"]) == [81.9, 95.1]  # TA2N Table 2, read in the paper
    ours = [record("protonet", "ucf101", 1, 0, [0.6, 0.8, 0.8, 1.0])]
    long = leaderboard_long(ours, reported)
    papers = long[long.training == "paper"]
    assert set(papers.benchmark) == {"ucf101"} and set(papers.k_shot) == {1}
    assert long[long.training != "paper"].iloc[0].best and not papers.best.any()
    text = render_leaderboard(ours, "md", reported)
    assert "| ta2n      | resnet50     | paper      | 81.9 " in text
    assert "78.2*" in text  # TRX 1-shot UCF: quoted by a later paper, not verified


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("method,backbone\nprotonet,resnet50\n", "lacks the column"),
        (
            "method,backbone,benchmark,n_way,k_shot,accuracy,source,evidence\n"
            "protonet,resnet50,ucf101,5,1,high,paper,read\n",
            "accuracy is not a number on line(s) 2",
        ),
        (
            "method,backbone,benchmark,n_way,k_shot,accuracy,source,evidence\n"
            "protonet,resnet50,ucf101,5,1,74.0,paper,hearsay\n",
            "unknown evidence 'hearsay'",
        ),
    ],
)
def test_malformed_published_numbers_are_clear_errors(tmp_path, content, message, capsys):
    from fsarbench.cli import main
    from fsarbench.errors import FsarbenchError
    from fsarbench.reported import load_reported

    path = tmp_path / "published.csv"
    path.write_text(content)
    with pytest.raises(FsarbenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_reported(path)
    assert main(["report", "--reported", str(path), "--results-dir", str(tmp_path)]) == 2
    with pytest.raises(FsarbenchError, match="does not exist"):
        load_reported(tmp_path / "none.csv")
