"""The synth numbers in the READMEs are generated from the committed records, never typed."""

from __future__ import annotations

import shutil

from conftest import REPO
from fsarbench.cli import main
from fsarbench.docs import END, START


def test_synth_numbers_in_the_readmes_are_current(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert main(["report", "--check"]) == 0, capsys.readouterr().err


def test_check_fails_on_a_stale_section_and_write_docs_repairs_it(tmp_path, monkeypatch, capsys):
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    shutil.copytree(REPO / "results" / "synth", tmp_path / "results" / "synth")
    readme = tmp_path / "README.md"
    text = (REPO / "README.md").read_text()
    readme.write_text(text.replace("| trx ", "| trx-typed-by-hand ", 1))
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--check"]) == 1
    assert "README.md: stale" in capsys.readouterr().err
    assert main(["report", "--write-docs"]) == 0
    assert readme.read_text() == text and main(["report", "--check"]) == 0
    method_readme = tmp_path / "configs" / "otam" / "README.md"
    method_readme.write_text(method_readme.read_text().replace(START, "").replace(END, ""))
    assert main(["report", "--check"]) == 1
    assert "configs/otam/README.md: no" in capsys.readouterr().err


def test_docs_modes_need_a_checkout(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--check"]) == 2
    assert "repository root" in capsys.readouterr().err
