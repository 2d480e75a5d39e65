"""Published numbers, beside ours in the leaderboard: ``results/reported/published.csv``.

One row per (method, backbone, benchmark, way, shot) with the accuracy a paper reports, its
source (paper and table) and how it was obtained (``evidence``): ``read`` in the paper text the
source names, from ``memory`` of the paper (widely quoted, not re-checked against its text), or
``secondary`` (quoted by a later paper's table). Only ``read`` counts as verified; the
leaderboard marks the others.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fsarbench.errors import FsarbenchError

COLUMNS = ("method", "backbone", "benchmark", "n_way", "k_shot", "accuracy", "source", "evidence")
EVIDENCE = ("read", "memory", "secondary")
# In a checkout (pip install -e), beside the package; an installed copy has none.
DEFAULT_REPORTED = Path(__file__).resolve().parents[1] / "results" / "reported" / "published.csv"


def load_reported(path: Path) -> pd.DataFrame:
    """The published numbers, checked: every column present, numbers numeric, evidence known."""
    try:
        frame = pd.read_csv(path, dtype={"note": str}, keep_default_na=False)
    except FileNotFoundError:
        raise FsarbenchError(
            f"published-numbers file {path} does not exist", "pass --reported FILE or --no-reported"
        ) from None
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise FsarbenchError(f"{path} is not a readable CSV file ({error})") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise FsarbenchError(
            f"{path} lacks the column(s) {', '.join(missing)}",
            f"its header must name {', '.join(COLUMNS)} (and optionally note)",
        )
    for column in ("n_way", "k_shot", "accuracy"):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = frame.index[values.isna()].tolist()
        if bad:
            raise FsarbenchError(
                f"{path}: {column} is not a number on line(s) "
                + ", ".join(str(i + 2) for i in bad[:5]),
                "write plain numbers (accuracy in percent, e.g. 47.6)",
            )
        frame[column] = values
    unknown = sorted(set(frame["evidence"]) - set(EVIDENCE))
    if unknown:
        raise FsarbenchError(
            f"{path}: unknown evidence {', '.join(map(repr, unknown))}",
            f"use one of {', '.join(EVIDENCE)}",
        )
    if "note" not in frame.columns:
        frame["note"] = ""
    frame[["n_way", "k_shot"]] = frame[["n_way", "k_shot"]].astype(int)
    return frame
