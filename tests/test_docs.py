"""The synth numbers in the READMEs are generated from the committed records, never typed."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_synth_numbers_in_the_readmes_are_current():
    check = subprocess.run(
        [sys.executable, str(REPO / "tools" / "synth_numbers.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
