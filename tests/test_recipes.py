"""Each method config carries its training recipe per benchmark (``schedules``) and its quick
synth settings (``method_overrides``); both are checked, and bad ones get a clear message."""

from __future__ import annotations

import pytest

from fsarbench.benchmarks.registry import get_benchmark
from fsarbench.config import compose_run_config, load_fragment, load_method_file, method_config
from fsarbench.errors import FsarbenchError
from fsarbench.names import method_configs

REAL = ["ssv2-full", "ssv2-small", "k100", "ucf101", "hmdb51"]
CONFIGS = list(method_configs())


@pytest.mark.parametrize("name", CONFIGS)
def test_every_method_config_has_a_recipe_for_every_benchmark(name):
    own_backbone = load_method_file(name).get("backbone")  # CLIP-FSAR: clip-vit-b16
    synth = compose_run_config(name, get_benchmark("synth"))
    assert synth.schedule["mode"] == "frozen"  # the quick CPU recipe
    assert synth.backbone_name == (own_backbone or "resnet18_synth")
    for benchmark in REAL:
        config = compose_run_config(name, get_benchmark(benchmark), k_shot=5)
        # The papers' setting: end to end from pretrained weights, many episodes (CLIP-FSAR's
        # K100 config: 10 epochs of 250 tasks).
        assert config.schedule["mode"] == "finetune", (name, benchmark)
        assert config.schedule["meta"]["iters"] >= 2_500, (name, benchmark)
        assert config.backbone_name == (own_backbone or "resnet50")
        assert config.protocol["crop"] == 224 and config.protocol["k_shot"] == 5


@pytest.fixture
def my_method(tmp_path, monkeypatch):
    """A method config folder outside fsarbench, for configs written by the test."""
    folder = tmp_path / "my_configs" / "mine"
    folder.mkdir(parents=True)
    monkeypatch.setenv("FSARBENCH_CONFIG_PATH", str(tmp_path / "my_configs"))
    return folder / "mine.py"


def test_schedules_by_benchmark_then_real_then_the_benchmark_default(my_method):
    my_method.write_text(
        'method = dict(type="protonet", metric="cos_mean")\n'
        'schedules = dict(ucf101="synth_quick", real="trx_sgd")\n'
        "method_overrides = dict(synth=dict(temperature=3.0), hmdb51=dict(temperature=5.0))\n"
    )
    trx = load_fragment("schedules", "trx_sgd")["schedule"]["name"]
    quick = load_fragment("schedules", "synth_quick")["schedule"]["name"]
    assert compose_run_config("mine", get_benchmark("ucf101")).schedule["name"] == quick
    assert compose_run_config("mine", get_benchmark("k100")).schedule["name"] == trx
    assert compose_run_config("mine", get_benchmark("synth")).schedule["name"] == quick
    assert method_config("mine", get_benchmark("synth"))["temperature"] == 3.0
    assert method_config("mine", get_benchmark("hmdb51"))["temperature"] == 5.0
    assert "temperature" not in method_config("mine", get_benchmark("k100"))


def test_a_method_without_recipes_uses_the_benchmarks_schedule(my_method):
    my_method.write_text('method = dict(type="protonet")\n')
    default = load_fragment("benchmarks", "k100")["benchmark"]["schedule"]
    expected = load_fragment("schedules", default)["schedule"]["name"]
    assert compose_run_config("mine", get_benchmark("k100")).schedule["name"] == expected


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('schedules = dict(kinetics400="trx_sgd")\n', "unknown benchmarks kinetics400"),
        ('schedules = dict(synth="fast_please")\n', "names no schedule 'fast_please'"),
        ("method_overrides = dict(ssv2=dict(temperature=1.0))\n", "unknown benchmarks ssv2"),
    ],
)
def test_bad_recipe_tables_are_named(my_method, body, problem):
    my_method.write_text('method = dict(type="protonet")\n' + body)
    with pytest.raises(FsarbenchError) as error:
        compose_run_config("mine", get_benchmark("synth"))
    assert problem in error.value.problem and str(my_method) in error.value.problem
