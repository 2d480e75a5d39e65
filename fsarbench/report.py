"""Leaderboards generated from result records (never typed by hand).

One row per (method, backbone, training), one column per (benchmark, way, shot). A cell is the
mean over seeds of the runs' mean accuracies, with the 95% interval of all their episodes
pooled (1.96 x population std / sqrt(total episodes), the TRX convention) and the number of
seeds and episodes per seed. The best mean of each column is marked.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fsarbench.benchmarks.registry import BENCHMARKS
from fsarbench.errors import FsarbenchError
from fsarbench.results import RunRecord
from fsarbench.stats import mean_and_ci95

FORMATS = ("md", "csv", "latex", "html")
ROW_KEYS = ["method", "backbone", "training"]
COLUMN_KEYS = ["benchmark", "n_way", "k_shot"]


def leaderboard_long(records: list[RunRecord]) -> pd.DataFrame:
    """One row per (method, backbone, training, benchmark, way, shot), plain numbers."""
    groups: dict[tuple, list[RunRecord]] = {}
    for record in records:
        key = tuple(getattr(record, k) for k in ROW_KEYS + COLUMN_KEYS)
        groups.setdefault(key, []).append(record)
    rows = []
    for key, runs in groups.items():
        pooled = np.concatenate([np.asarray(r.episode_accuracies) for r in runs])
        _, pooled_ci95 = mean_and_ci95(pooled)
        episodes = sorted({r.n_episodes for r in runs})
        rows.append(
            dict(
                zip(ROW_KEYS + COLUMN_KEYS, key, strict=True),
                acc_mean=float(np.mean([r.acc_mean for r in runs])),
                acc_ci95=pooled_ci95,
                n_seeds=len({r.seed for r in runs}),
                n_episodes_per_seed=episodes[0] if len(episodes) == 1 else math.nan,
                episode_set_hashes=",".join(sorted({r.episode_set_hash[:12] for r in runs})),
            )
        )
    if not rows:
        raise FsarbenchError(
            "no result records to report", "run `fsarbench run` first, or pass --results-dir"
        )
    frame = pd.DataFrame(rows)
    order = {name: i for i, name in enumerate(BENCHMARKS)}
    frame["_benchmark_order"] = frame["benchmark"].map(lambda b: order.get(b.split("-")[0], 99))
    frame = frame.sort_values(["_benchmark_order", "benchmark", "n_way", "k_shot", "method"])
    best = frame.groupby(COLUMN_KEYS)["acc_mean"].transform("max")
    frame["best"] = np.isclose(frame["acc_mean"], best)
    return frame.drop(columns="_benchmark_order").reset_index(drop=True)


def _column_label(benchmark: str, n_way: int, k_shot: int) -> str:
    return f"{benchmark} {n_way}-way {k_shot}-shot"


def _cell(row, fmt: str) -> str:
    episodes = row.n_episodes_per_seed
    size = f"{row.n_seeds}×{int(episodes):,}" if not math.isnan(episodes) else f"{row.n_seeds}×?"
    text = f"{row.acc_mean:.2f} ± {row.acc_ci95:.2f}"
    if row.best:
        text = {"md": f"**{text}**", "latex": f"\\textbf{{{text}}}", "html": f"<b>{text}</b>"}[fmt]
    if fmt == "latex":
        text = text.replace("±", "$\\pm$")
        size = size.replace("×", "$\\times$")
    return f"{text} ({size})"


def leaderboard_wide(long: pd.DataFrame, fmt: str) -> pd.DataFrame:
    columns = list(dict.fromkeys(_column_label(*k) for k in long[COLUMN_KEYS].itertuples(False)))
    table: dict[tuple, dict[str, str]] = {}
    for row in long.itertuples(index=False):
        cells = table.setdefault(tuple(getattr(row, k) for k in ROW_KEYS), {})
        cells[_column_label(row.benchmark, row.n_way, row.k_shot)] = _cell(row, fmt)
    frame = pd.DataFrame(
        [dict(zip(ROW_KEYS, key, strict=True), **cells) for key, cells in sorted(table.items())]
    )
    return frame.reindex(columns=ROW_KEYS + columns).fillna("–")


def render_leaderboard(records: list[RunRecord], fmt: str = "md") -> str:
    if fmt not in FORMATS:
        raise FsarbenchError(f"unknown format {fmt!r}", f"use one of {', '.join(FORMATS)}")
    long = leaderboard_long(records)
    if fmt == "csv":
        return long.to_csv(index=False)
    wide = leaderboard_wide(long, fmt)
    legend = (
        "Accuracy (%): mean over seeds ± 95% interval of the pooled "
        "episodes (1.96 × std / √n); (seeds × episodes per seed); best per column in bold."
    )
    if fmt == "md":
        return wide.to_markdown(index=False) + "\n\n" + legend + "\n"
    if fmt == "html":
        return wide.to_html(index=False, escape=False) + f"\n<p>{legend}</p>\n"
    latex = wide.to_latex(
        index=False, escape=False, column_format="lll" + "c" * (wide.shape[1] - 3)
    )
    return latex.replace("_", "\\_")
