"""Speed of the batched exact EMD (``fsarbench.ot.emd_batch``) against ``ot.emd`` per problem.

The A²M²-Net head solves one transport problem per (query, class) pair: 18 x 18 candidates at
1 shot and 18 x 90 at 5 shots (union of the shots) with the default windows at T = 8. Random
cosine-like costs and random positive weights; the same problems for every path.

    python tools/speed_emd.py                   # 20,000 problems per size
    python tools/speed_emd.py --problems 5000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ot
import pandas as pd

from fsarbench.ot import emd_batch

SIZES = {"1-shot (18 x 18)": (18, 18), "5-shot (18 x 90)": (18, 90)}


def per_problem(cost, a, b) -> None:
    for i in range(len(cost)):
        ot.emd(a[i], b[i], cost[i])


def problems_per_second(solve, cost, a, b, **kw) -> float:
    started = time.perf_counter()
    solve(cost, a, b, **kw)
    return len(cost) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=20_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for label, (n, m) in SIZES.items():
        cost = rng.uniform(0.0, 2.0, size=(args.problems, n, m))
        a, b = rng.uniform(0.1, 1.0, (args.problems, n)), rng.uniform(0.1, 1.0, (args.problems, m))
        b_scaled = b * (a.sum(1) / b.sum(1))[:, None]
        subset = slice(0, 2_000)  # the slow path: a subset is enough to time it
        naive = problems_per_second(per_problem, cost[subset], a[subset], b_scaled[subset])
        row = {"size": label, "ot.emd per problem (/s)": round(naive)}
        for threads in (1, 2):
            rate = problems_per_second(emd_batch, cost, a, b, threads=threads, plans=False)
            row[f"emd_batch, {threads} thread(s) (/s)"] = round(rate)
            row[f"ratio, {threads} thread(s)"] = f"{rate / naive:.1f}x"
        rows.append(row)
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
