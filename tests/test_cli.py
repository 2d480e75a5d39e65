"""The command line as a user types it: output, exit codes, and one clear message per mistake."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import TINY_SYNTH, split_source
from fsarbench.backbones import all_backbones
from fsarbench.cli import COMMANDS, main
from fsarbench.names import method_class_attributes, registered_methods


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_data_splits_prints_the_counts(capsys):
    code, out, _ = run_cli(
        capsys, "data", "splits", "ssv2-full", "--from", str(split_source("ssv2-full"))
    )
    assert code == 0
    assert "train   64 classes   77,500 videos" in out
    assert "val     12 classes    1,926 videos" in out
    assert "test    24 classes    2,857 videos" in out


@pytest.mark.parametrize(
    "name, lines",
    [
        ("ssv2-small", ["64 classes    6,400", "12 classes    1,200", "24 classes    2,400"]),
        ("kinetics", ["64 classes    6,400", "12 classes    1,200", "24 classes    2,400"]),
        ("ucf101", ["70 classes    9,154", "10 classes    1,421", "21 classes    2,745"]),
        ("hmdb51", ["31 classes    4,280", "10 classes    1,194", "10 classes    1,292"]),
    ],
)
def test_data_splits_other_benchmarks(capsys, name, lines):
    folder = split_source({"kinetics": "k100"}.get(name, name))
    code, out, _ = run_cli(capsys, "data", "splits", name, "--from", str(folder))
    assert code == 0 and all(line in out for line in lines)


def test_unknown_benchmark_exits_2_and_lists_names(capsys):
    code, out, err = run_cli(capsys, "data", "splits", "ssv3")
    assert code == 2 and out == ""
    assert "unknown benchmark 'ssv3'" in err and "ssv2-full (alias ssv2)" in err


def test_videos_and_frames_conflict(capsys):
    assert main(["data", "prepare", "ucf101", "--videos", "a", "--frames", "b"]) == 2
    err = capsys.readouterr().err
    assert "not allowed with argument" in err and "--help` lists the options" in err
    assert "usage:" not in err


def test_prepare_needs_splits_first(capsys, tmp_path):
    code, _, err = run_cli(capsys, "data", "prepare", "ucf101", "--videos", str(tmp_path))
    assert code == 2 and "fsarbench data splits ucf101" in err


def test_prepare_missing_folder(capsys, tmp_path):
    run_cli(capsys, "data", "splits", "ucf101", "--from", str(split_source("ucf101")))
    code, _, err = run_cli(capsys, "data", "prepare", "ucf101", "--videos", str(tmp_path / "no"))
    assert code == 2 and "no such folder" in err


def test_generate_and_prepare_are_for_the_right_benchmarks(capsys):
    code, _, err = run_cli(capsys, "data", "generate", "k100")
    assert code == 2 and "cannot be generated" in err
    code, _, err = run_cli(capsys, "data", "prepare", "synth", "--videos", ".")
    assert code == 2 and "fsarbench data generate synth" in err


def test_generate_prints_coverage_and_location(capsys):
    code, out, _ = run_cli(
        capsys,
        "data",
        "generate",
        "synth",
        "--seed",
        "3",
        "--videos-per-class",
        "3",
        "--frames",
        "8",
        "--size",
        "32",
    )
    assert code == 0
    assert "train       64       192      192        0" in out
    assert f"seed3-{TINY_SYNTH.fingerprint}" in out
    assert "refers to the default settings" in out


def test_generate_rejects_bad_settings(capsys):
    code, _, err = run_cli(capsys, "data", "generate", "synth", "--tempo-warp", "2")
    assert code == 2 and "tempo_warp must be in [0, 1]" in err


def test_ls_benchmarks_shows_state(capsys):
    run_cli(capsys, "data", "splits", "hmdb51", "--from", str(split_source("hmdb51")))
    code, out, _ = run_cli(capsys, "ls", "benchmarks")
    assert code == 0
    for name in ("ssv2-full", "ssv2-small", "k100", "ucf101", "hmdb51", "synth", "kinetics"):
        assert name in out
    assert "verified" in out and "absent" in out and "not prepared" in out


def test_console_script_runs():
    result = subprocess.run(
        [sys.executable, "-m", "fsarbench", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith("fsarbench ")


def test_bad_split_files_exit_2_and_write_nothing(capsys, tmp_path, fsarbench_home):
    source = tmp_path / "lists"
    source.mkdir()
    for name in ("trainlist03.txt", "vallist03.txt", "testlist03.txt"):
        (source / name).write_bytes((split_source("ucf101") / name).read_bytes())
    (source / "testlist03.txt").write_text("../../etc/passwd\n")
    code, out, err = run_cli(capsys, "data", "splits", "ucf101", "--from", str(source))
    assert code == 2 and out == ""
    assert "testlist03.txt, line 1: '../../etc/passwd'" in err
    assert "outside the videos folder" in err
    assert not (fsarbench_home / "data" / "benchmarks" / "ucf101" / "splits").exists()

    (source / "testlist03.txt").write_text("Archery/v_Archery_g01_c01\n")
    code, _, err = run_cli(capsys, "data", "splits", "ucf101", "--from", str(source))
    assert code == 2 and "sha256" in err and "fix:" in err
    assert not (fsarbench_home / "data" / "benchmarks" / "ucf101" / "splits").exists()


def test_config_prints_the_merged_config(capsys):
    assert main(["config", "protonet", "ucf101", "--shot", "5", "--train", "finetune"]) == 0
    out = capsys.readouterr().out
    for fragment in (
        "k_shot=5",
        "mode='finetune'",
        "type='FrameResNet'",
        "depth=50",
        "name='trx-sgd'",
        "# config hash: ",
    ):
        assert fragment in out, fragment


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        *([command, "--help"] for command in COMMANDS),
        ["ls", "benchmarks"],
        ["ls", "methods"],  # the classes' facts read from their source
        ["ls", "backbones"],  # likewise
        # errors the names and numbers alone show are refused before torch is imported
        ["run", "--methods", "nope"],
        ["run", "--datasets", "nope"],
        ["run", "--shots", "0"],
        ["config", "nope", "synth"],
    ],
    ids=lambda argv: " ".join(argv) or "no command",
)
def test_help_and_light_commands_start_without_torch(argv):
    """`fsarbench --help`, every command's --help, `ls` and errors that need no model import
    neither torch nor MMAction2 nor SciPy: each command's module loads when that command is
    named, and what a parser needs is light (start-up: tools/speed_startup.py)."""
    code = (
        "import sys\n"
        "from fsarbench.cli import main\n"
        f"code = main({argv!r})\n"
        "heavy = sorted({'torch', 'mmaction', 'scipy', 'transformers'} & set(sys.modules))\n"
        "print('HEAVY', heavy, code)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    ).stdout
    assert "HEAVY [] " in out, out[-500:]


@pytest.mark.parametrize("name", sorted(registered_methods()))
def test_ls_methods_reads_each_class_facts_from_source_as_the_class_has_them(name):
    """`ls methods` reads ``feature_kind`` and ``paper`` from the method modules' source, not
    from the imported classes (torch): what it reads is what the registered class holds."""
    cls = registered_methods()[name]
    read = method_class_attributes(name, ("feature_kind", "paper"))
    assert read == {"feature_kind": cls.feature_kind, "paper": cls.paper}


@pytest.mark.parametrize("name", sorted(all_backbones()))
def test_ls_backbones_reads_each_backbone_kinds_from_source_as_the_class_has_them(name):
    """`ls backbones` reads a backbone class's ``kinds`` from source (a module constant it
    names included): what it reads is what the registered class holds."""
    from fsarbench.registry import MODELS

    type_name = all_backbones()[name].config["type"]
    read = method_class_attributes(type_name, ("kinds",))
    assert read == {"kinds": MODELS.get(type_name).kinds}


def test_ls_methods_imports_the_class_of_a_method_defined_elsewhere():
    """A type no fsarbench method module defines (a method another package registers) gives
    None, and `ls methods` then asks the registry."""
    assert method_class_attributes("no_such_method", ("feature_kind",)) is None
