"""Figures from result records (matplotlib, PNG and SVG): ``fsarbench report --plots DIR``.

- ``accuracy-<benchmark>-<N>way-<K>shot``: one horizontal bar per (method, backbone, training),
  the mean over seeds with the pooled 95% interval as an error bar, best on top;
- ``shots-<benchmark>-<N>way``: accuracy against shots, one line per (method, backbone,
  training), with the same intervals.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fsarbench.fileio import check_writable_folder
from fsarbench.report import leaderboard_long
from fsarbench.results import RunRecord

FORMATS = ("png", "svg")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _label(row) -> str:
    return f"{row.method} ({row.backbone}, {row.training})"


def _save(figure, folder: Path, stem: str) -> list[Path]:
    paths = []
    for suffix in FORMATS:
        path = folder / f"{stem}.{suffix}"
        figure.savefig(path, dpi=150, bbox_inches="tight")
        paths.append(path)
    return paths


def accuracy_figure(rows: pd.DataFrame, title: str):
    import matplotlib.pyplot as plt

    rows = rows.sort_values("acc_mean")  # barh draws bottom-up: best on top
    labels = [_label(row) for row in rows.itertuples()]
    height = 0.8 + 0.38 * len(rows)
    figure, axes = plt.subplots(figsize=(7.5, height))
    colours = ["tab:orange" if best else "tab:blue" for best in rows["best"]]
    axes.barh(labels, rows["acc_mean"], xerr=rows["acc_ci95"], color=colours, capsize=3)
    for position, row in enumerate(rows.itertuples()):
        axes.text(
            row.acc_mean + row.acc_ci95 + 0.8,
            position,
            f"{row.acc_mean:.1f}",
            va="center",
            fontsize=8,
        )
    axes.set_xlim(0, 105)
    axes.set_xlabel("accuracy (%), mean over seeds ± 95% interval of the pooled episodes")
    axes.set_title(title)
    axes.grid(axis="x", alpha=0.3)
    axes.tick_params(axis="y", labelsize=8)
    figure.tight_layout()
    return figure


def shots_figure(rows: pd.DataFrame, title: str):
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 5))
    shots = sorted(rows["k_shot"].unique())
    lines = rows.groupby(["method", "backbone", "training"], sort=True)
    # 20 distinct colours and 8 markers: no two of up to 40 lines look alike
    colours = plt.get_cmap("tab20").colors
    for index, (_, line) in enumerate(lines):
        line = line.sort_values("k_shot")
        axes.errorbar(
            line["k_shot"],
            line["acc_mean"],
            yerr=line["acc_ci95"],
            color=colours[(2 * index) % 20 + (index // 10) % 2],
            marker=MARKERS[index % len(MARKERS)],
            capsize=3,
            label=_label(line.iloc[0]),
        )
    axes.set_xticks(shots)
    axes.set_xlabel("shots per class")
    axes.set_ylabel("accuracy (%)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    # outside the axes: many methods would cover the lines
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    figure.tight_layout()
    return figure


def write_plots(records: list[RunRecord], folder: Path) -> list[Path]:
    """Every figure for the records into ``folder``; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    check_writable_folder(folder, "--plots")
    long = leaderboard_long(records)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for (benchmark, n_way, k_shot), rows in long.groupby(["benchmark", "n_way", "k_shot"]):
        figure = accuracy_figure(rows, f"{benchmark}, {n_way}-way {k_shot}-shot")
        written += _save(figure, folder, f"accuracy-{benchmark}-{n_way}way-{k_shot}shot")
        plt.close(figure)
    for (benchmark, n_way), rows in long.groupby(["benchmark", "n_way"]):
        if rows["k_shot"].nunique() < 2:
            continue
        figure = shots_figure(rows, f"{benchmark}, {n_way}-way: accuracy against shots")
        written += _save(figure, folder, f"shots-{benchmark}-{n_way}way")
        plt.close(figure)
    return written
