"""Leaderboards generated from result records (never typed by hand).

One row per (method, backbone, training), one column per (benchmark, way, shot). A cell is the
mean over seeds of the runs' mean accuracies, with the 95% interval of all their episodes
pooled (1.96 x population std / sqrt(total episodes), the TRX convention), the spread over
seeds (the sample standard deviation of the per-seed means, with two seeds or more) and the
number of seeds and episodes per seed. The episode interval says how precisely the episodes
pin the mean down; the seed spread says how much a rerun with another seed moves it.

The best mean of each column is marked, and so is every row that a paired t-test on the
episodes it shares with the best row cannot tell apart from it (p >= ``TIE_ALPHA``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fsarbench.benchmarks.registry import BENCHMARKS
from fsarbench.compare import paired_runs, pooled_difference
from fsarbench.errors import FsarbenchError
from fsarbench.results import RunRecord, row_key
from fsarbench.stats import mean_and_ci95

FORMATS = ("md", "csv", "latex", "html")
TIE_ALPHA = 0.05
ROW_KEYS = ["method", "backbone", "training"]
COLUMN_KEYS = ["benchmark", "n_way", "k_shot"]


def leaderboard_long(
    records: list[RunRecord], reported: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per (method, backbone, training, benchmark, way, shot), plain numbers; with
    ``reported`` (``fsarbench.reported.load_reported``), the published numbers for the columns
    our records have, as rows of training ``paper`` (never best: other episodes)."""
    groups: dict[tuple, list[RunRecord]] = {}
    for record in records:
        key = row_key(record, ROW_KEYS + COLUMN_KEYS)
        groups.setdefault(key, []).append(record)
    rows = []
    for key, runs in groups.items():
        pooled = np.concatenate([np.asarray(r.episode_accuracies) for r in runs])
        _, pooled_ci95 = mean_and_ci95(pooled)
        episodes = sorted({r.n_episodes for r in runs})
        seed_means = [r.acc_mean for r in runs]
        rows.append(
            dict(
                zip(ROW_KEYS + COLUMN_KEYS, key, strict=True),
                leakage=",".join(sorted({c for r in runs for c in r.leakage})),
                settings=settings_text(runs[0].settings),
                acc_mean=float(np.mean(seed_means)),
                acc_ci95=pooled_ci95,
                seed_std=float(np.std(seed_means, ddof=1)) if len(runs) > 1 else math.nan,
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
    best = frame.groupby(COLUMN_KEYS)["acc_mean"].transform("max")
    frame["best"] = np.isclose(frame["acc_mean"], best)
    champion_of = {}  # column -> the row key of its best row (the first, where means tie)
    for row in frame[frame["best"]].itertuples(index=False):
        column = tuple(getattr(row, k) for k in COLUMN_KEYS)
        champion_of.setdefault(column, tuple(getattr(row, k) for k in ROW_KEYS))
    frame["tied_with_best"] = [
        _tied_with_best(row, champion_of, groups) for row in frame.itertuples(index=False)
    ]
    frame["source"], frame["evidence"] = "", ""
    if reported is not None:
        frame = pd.concat([frame, _reported_rows(reported, frame)], ignore_index=True)
    order = {name: i for i, name in enumerate(BENCHMARKS)}
    frame["_benchmark_order"] = frame["benchmark"].map(
        lambda b: order.get(b, order.get(b.split("-")[0], len(order)))
    )
    frame = frame.sort_values(["_benchmark_order", "benchmark", "n_way", "k_shot", "method"])
    return frame.drop(columns="_benchmark_order").reset_index(drop=True)


def _reported_rows(reported: pd.DataFrame, ours: pd.DataFrame) -> pd.DataFrame:
    columns = set(ours[COLUMN_KEYS].itertuples(index=False, name=None))
    keep = [tuple(row) in columns for row in reported[COLUMN_KEYS].itertuples(index=False)]
    chosen = reported[keep]
    return pd.DataFrame(
        dict(
            method=chosen["method"],
            backbone=chosen["backbone"],
            training="paper",
            benchmark=chosen["benchmark"],
            n_way=chosen["n_way"],
            k_shot=chosen["k_shot"],
            leakage="",
            settings="",
            acc_mean=chosen["accuracy"].astype(float),
            acc_ci95=math.nan,
            seed_std=math.nan,
            n_seeds=0,
            n_episodes_per_seed=math.nan,
            episode_set_hashes="",
            best=False,
            tied_with_best=False,
            source=chosen["source"],
            evidence=chosen["evidence"],
        )
    )


def _tied_with_best(
    row, champion_of: dict[tuple, tuple], groups: dict[tuple, list[RunRecord]]
) -> bool:
    """True when a paired test on the episodes this row shares with its column's best row
    cannot separate them (p >= TIE_ALPHA); False for the best row itself and without shared
    episodes."""
    if row.best:
        return False
    column = tuple(getattr(row, k) for k in COLUMN_KEYS)
    mine = groups[tuple(getattr(row, k) for k in ROW_KEYS) + column]
    theirs = groups[champion_of[column] + column]
    try:
        pairs = paired_runs(mine, theirs)
    except FsarbenchError:  # different episode sets: nothing to pair
        return False
    return bool(pairs) and pooled_difference(pairs).p_value >= TIE_ALPHA


def settings_text(settings: dict) -> str:
    """A variant's settings, as the report lists them: key=value, comma-separated."""
    return ", ".join(f"{key}={value}" for key, value in settings.items())


def _variants_legend(long: pd.DataFrame) -> str:
    """What differs from the defaults, per row that is a variant (+TAG, ~HASH)."""
    variants = long[long["settings"].fillna("") != ""][["method", "settings"]]
    described = dict(variants.drop_duplicates().itertuples(index=False, name=None))
    tagged = sorted(m for m in set(long["method"]) if "+" in m and m not in described)
    parts = [f"{method}: {settings}" for method, settings in sorted(described.items())]
    parts += [f"{method}: the defaults" for method in tagged]
    if not parts:
        return ""
    return " Variants (settings that differ from the defaults): " + "; ".join(parts) + "."


def _column_label(benchmark: str, n_way: int, k_shot: int) -> str:
    return f"{benchmark} {n_way}-way {k_shot}-shot"


def _cell(row, fmt: str) -> str:
    if row.training == "paper":
        mark = "" if row.evidence == "read" else ("$^*$" if fmt == "latex" else "*")
        return f"{row.acc_mean:.1f}{mark}"
    episodes = row.n_episodes_per_seed
    size = f"{row.n_seeds}×{int(episodes):,}" if not math.isnan(episodes) else f"{row.n_seeds}×?"
    if not math.isnan(row.seed_std):
        size += f", sd {row.seed_std:.2f}"
    text = f"{row.acc_mean:.2f} ± {row.acc_ci95:.2f}"
    if row.best:
        text = {"md": f"**{text}**", "latex": f"\\textbf{{{text}}}", "html": f"<b>{text}</b>"}[fmt]
    if row.tied_with_best:
        text += "$^\\dagger$" if fmt == "latex" else "†"
    if row.leakage:  # the backbone's pretraining saw the test classes (--allow-leakage)
        text += "$^\\ddagger$" if fmt == "latex" else "‡"
    if fmt == "latex":
        text = text.replace("±", "$\\pm$")
        size = size.replace("×", "$\\times$")
    return f"{text} ({size})"


def leaderboard_wide(long: pd.DataFrame, fmt: str, failures=()) -> pd.DataFrame:
    """``failures``: runs that raised (``RunFailure``); their cells say which seeds failed."""
    columns = list(dict.fromkeys(_column_label(*k) for k in long[COLUMN_KEYS].itertuples(False)))
    table: dict[tuple, dict[str, str]] = {}
    for row in long.itertuples(index=False):
        cells = table.setdefault(tuple(getattr(row, k) for k in ROW_KEYS), {})
        cells[_column_label(row.benchmark, row.n_way, row.k_shot)] = _cell(row, fmt)
    failed_seeds: dict[tuple, list[int]] = {}
    for failure in failures:
        key = (*row_key(failure, ROW_KEYS), failure.benchmark, failure.n_way)
        failed_seeds.setdefault((*key, failure.k_shot), []).append(failure.seed)
    for (*key, benchmark, n_way, k_shot), seeds in sorted(failed_seeds.items()):
        column = _column_label(benchmark, n_way, k_shot)
        columns += [column] if column not in columns else []
        cells = table.setdefault(tuple(key), {})
        mark = f"FAILED: seed {', '.join(map(str, sorted(seeds)))}"
        cells[column] = f"{cells[column]}; {mark}" if column in cells else mark
    frame = pd.DataFrame(
        [dict(zip(ROW_KEYS, key, strict=True), **cells) for key, cells in sorted(table.items())]
    )
    return frame.reindex(columns=ROW_KEYS + columns).fillna("–")


def render_leaderboard(
    records: list[RunRecord],
    fmt: str = "md",
    reported: pd.DataFrame | None = None,
    failures=(),
) -> str:
    """The leaderboard; ``failures`` (``RunFailure``, runs that raised) are shown in their
    cells (md, LaTeX, HTML) or as rows of status ``failed`` (CSV)."""
    if fmt not in FORMATS:
        raise FsarbenchError(f"unknown format {fmt!r}", f"use one of {', '.join(FORMATS)}")
    if records or not failures:
        long = leaderboard_long(records, reported)
    else:  # nothing finished yet: the table of failures alone
        long = pd.DataFrame(columns=[*ROW_KEYS, *COLUMN_KEYS, "leakage"])
    if fmt == "csv":
        long = long.assign(status="ok")
        failed = pd.DataFrame(
            [
                dict(zip(ROW_KEYS + COLUMN_KEYS, row_key(f, ROW_KEYS + COLUMN_KEYS), strict=True))
                for f in failures
            ],
            columns=ROW_KEYS + COLUMN_KEYS,
        )
        if len(failed):
            failed["seed"] = [f.seed for f in failures]
            failed["status"] = "failed"
            failed["error"] = [f.error for f in failures]
            long = pd.concat([long, failed], ignore_index=True)
        return long.to_csv(index=False)
    wide = leaderboard_wide(long, fmt, failures)
    legend = (
        "Accuracy (%): mean over seeds ± 95% interval of the pooled episodes (1.96 × std / √n); "
        "(seeds × episodes per seed, sd: standard deviation of the per-seed means); best per "
        f"column in bold; †: a paired t-test on the shared episodes cannot tell it from the "
        f"best (p ≥ {TIE_ALPHA})."
    )
    if (long["leakage"] != "").any():
        legend += (
            " ‡: the backbone's pretraining has seen this benchmark's test classes "
            "(run with --allow-leakage; not a few-shot result)."
        )
    if failures:
        legend += (
            " FAILED: those seeds' runs raised (`fsarbench status` shows each error and its "
            "log); the cell's numbers, if any, are over the other seeds."
        )
    if "settings" in long:
        legend += _variants_legend(long)
    if (long["training"] == "paper").any():
        legend += (
            " Training `paper`: the number the paper reports (its episodes, not ours; sources "
            "in results/reported/published.csv); *: not verified against the paper text."
        )
    if fmt == "md":
        return wide.to_markdown(index=False) + "\n\n" + legend + "\n"
    if fmt == "html":
        return wide.to_html(index=False, escape=False) + f"\n<p>{legend}</p>\n"
    latex = wide.to_latex(
        index=False, escape=False, column_format="lll" + "c" * (wide.shape[1] - 3)
    )
    return latex.replace("_", "\\_")


def _pooled_share(runs: list[dict]) -> tuple[float, float, int]:
    """Pool per-seed shares of binary outcomes (percent, with query counts): the pooled percent,
    its 95% interval (1.96 x sqrt(p (1 - p) / n), the population std of 0/1 outcomes) and n."""
    total = sum(r["queries"] for r in runs)
    if total == 0:
        return math.nan, math.nan, 0
    share = sum(r["share"] * r["queries"] for r in runs) / total / 100.0
    return 100.0 * share, 100.0 * 1.96 * math.sqrt(share * (1 - share) / total), total


def breakdown_long(records: list[RunRecord]) -> pd.DataFrame:
    """Order-pair breakdown, one row per (method, backbone, training, benchmark, way, shot),
    seeds pooled: accuracy on queries whose order twin is in the episode, how often the twin
    was predicted, and accuracy on the other queries."""
    groups: dict[tuple, list[RunRecord]] = {}
    for record in records:
        if record.breakdown:
            key = row_key(record, ROW_KEYS + COLUMN_KEYS)
            groups.setdefault(key, []).append(record)
    if not groups:
        raise FsarbenchError(
            "no record has an order-pair breakdown",
            "run methods on synth (its classes come in order twins); real benchmarks have none",
        )
    rows = []
    for key, runs in sorted(groups.items()):
        pairs = [r.breakdown["order_pairs"] for r in runs]
        others = [r.breakdown["no_twin_in_episode"] for r in runs]
        pair_acc, pair_ci95, pair_n = _pooled_share(
            [dict(share=p["acc"], queries=p["queries"]) for p in pairs]
        )
        twin, twin_ci95, _ = _pooled_share(
            [dict(share=p["twin_predicted"], queries=p["queries"]) for p in pairs]
        )
        other_acc, other_ci95, other_n = _pooled_share(
            [dict(share=o["acc"], queries=o["queries"]) for o in others]
        )
        rows.append(
            dict(
                zip(ROW_KEYS + COLUMN_KEYS, key, strict=True),
                n_seeds=len({r.seed for r in runs}),
                order_pair_queries=pair_n,
                order_pair_acc=pair_acc,
                order_pair_acc_ci95=pair_ci95,
                twin_predicted=twin,
                twin_predicted_ci95=twin_ci95,
                other_queries=other_n,
                other_acc=other_acc,
                other_acc_ci95=other_ci95,
            )
        )
    return pd.DataFrame(rows)


def render_breakdown(records: list[RunRecord], fmt: str = "md") -> str:
    if fmt not in FORMATS:
        raise FsarbenchError(f"unknown format {fmt!r}", f"use one of {', '.join(FORMATS)}")
    long = breakdown_long(records)
    if fmt == "csv":
        return long.to_csv(index=False)
    pm = "$\\pm$" if fmt == "latex" else "±"
    table = pd.DataFrame(
        {
            "method": long["method"],
            "backbone": long["backbone"],
            "training": long["training"],
            "episodes": [_column_label(*k) for k in long[COLUMN_KEYS].itertuples(False)],
            "order-pair queries: acc": [
                f"{a:.2f} {pm} {c:.2f}"
                for a, c in zip(long.order_pair_acc, long.order_pair_acc_ci95, strict=True)
            ],
            "twin predicted": [
                f"{a:.2f} {pm} {c:.2f}"
                for a, c in zip(long.twin_predicted, long.twin_predicted_ci95, strict=True)
            ],
            "other queries: acc": [
                f"{a:.2f} {pm} {c:.2f}"
                for a, c in zip(long.other_acc, long.other_acc_ci95, strict=True)
            ],
            "queries (pairs / other)": [
                f"{p:,} / {o:,}"
                for p, o in zip(long.order_pair_queries, long.other_queries, strict=True)
            ],
        }
    )
    legend = (
        "Order-pair queries: their class's order twin (the same sub-actions in another order) "
        "is in the episode, so only temporal order separates them. Accuracy and twin-predicted "
        "rate in %, seeds pooled, ± 95% interval over queries."
    )
    if fmt == "md":
        return table.to_markdown(index=False) + "\n\n" + legend + "\n"
    if fmt == "html":
        return table.to_html(index=False) + f"\n<p>{legend}</p>\n"
    return table.to_latex(index=False, escape=False).replace("_", "\\_")
