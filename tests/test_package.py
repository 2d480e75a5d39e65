"""The installed package: layout, registries, lint."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from conftest import REPO


def test_methods_install_as_fsarbench_methods(tmp_path):
    # From a folder outside the checkout, so only the installation is on the path.
    probe = (
        "import importlib.util, fsarbench.methods; "
        "print(importlib.util.find_spec('methods') is None)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_registries_are_children_of_mmaction():
    from mmaction.registry import DATASETS as MMACTION_DATASETS

    from fsarbench.registry import DATASETS, MODELS

    assert DATASETS.parent is MMACTION_DATASETS and DATASETS.scope == "fsarbench"
    assert MODELS.scope == "fsarbench"
    assert DATASETS.get("FewShotClipDataset") is not None


def test_configs_are_installed_with_the_package():
    from fsarbench.configs import config_path

    assert config_path("_base_/protocols/trx_5way.py").is_file()


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed")
def test_ruff_is_clean():
    for command in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *command], cwd=REPO, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_config_fragments_load_and_build_pipelines():
    from mmengine.config import Config

    from fsarbench.benchmarks.registry import get_benchmark
    from fsarbench.configs import CONFIG_ROOT
    from fsarbench.data.pipelines import build_pipeline

    protocols = sorted((CONFIG_ROOT / "_base_" / "protocols").glob("*.py"))
    benchmarks = sorted((CONFIG_ROOT / "_base_" / "benchmarks").glob("*.py"))
    assert protocols and len(benchmarks) == 6
    for path in protocols:
        protocol = Config.fromfile(str(path)).protocol
        for train in (True, False):
            assert build_pipeline(protocol, train=train)
    for path in benchmarks:
        benchmark = Config.fromfile(str(path)).benchmark
        assert get_benchmark(benchmark.name).name == benchmark.name
