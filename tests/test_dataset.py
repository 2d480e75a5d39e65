from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import TINY_SYNTH, split_source
from fsarbench.benchmarks.prepare import prepare_benchmark, prepared_folder
from fsarbench.benchmarks.registry import get_benchmark
from fsarbench.benchmarks.splits import store_splits
from fsarbench.benchmarks.standin import make_standin_tree
from fsarbench.data.pipelines import build_pipeline
from fsarbench.errors import FsarbenchError
from fsarbench.registry import DATASETS

PROTOCOL = dict(num_frames=8, resize_short=32, crop=28, hflip=True)
SYNTH = {k: getattr(TINY_SYNTH, k) for k in TINY_SYNTH.__dataclass_fields__}


def _dataset(split="test", train=False, decoder="decord", **kw):
    return DATASETS.build(
        dict(
            type="FewShotClipDataset",
            split=split,
            pipeline=build_pipeline(PROTOCOL, train=train, decoder=decoder),
            test_mode=not train,
            **kw,
        )
    )


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_synth_clips_are_T_C_H_W_with_labels(tiny_synth_home, monkeypatch, decoder):
    monkeypatch.setenv("FSARBENCH_HOME", str(tiny_synth_home))
    dataset = _dataset(benchmark="synth", synth=SYNTH, decoder=decoder)
    assert len(dataset) == 24 * TINY_SYNTH.videos_per_class
    assert len(dataset.classes) == 24
    sample = dataset[5]
    assert sample["inputs"].shape == (8, 3, 28, 28) and sample["inputs"].dtype == torch.uint8
    label = int(sample["data_samples"].gt_labels.item)
    assert 0 <= label < 24
    assert dataset.get_data_info(5)["class_name"] == dataset.classes[label]
    assert sample["data_samples"].metainfo["video_id"].startswith("v")
    # Test-time sampling and cropping are deterministic: the basis of the feature store.
    assert torch.equal(sample["inputs"], dataset[5]["inputs"])


def test_decoders_agree_on_test_clips(tiny_synth_home, monkeypatch):
    monkeypatch.setenv("FSARBENCH_HOME", str(tiny_synth_home))
    decord_clip = _dataset(benchmark="synth", synth=SYNTH, decoder="decord")[0]["inputs"]
    pyav_clip = _dataset(benchmark="synth", synth=SYNTH, decoder="pyav")[0]["inputs"]
    # Same frames; colour conversion may differ by a grey level or two between libraries.
    assert (decord_clip.int() - pyav_clip.int()).abs().float().mean() < 2.0


def test_train_pipeline_samples_randomly(tiny_synth_home, monkeypatch):
    monkeypatch.setenv("FSARBENCH_HOME", str(tiny_synth_home))
    dataset = _dataset(split="train", train=True, benchmark="synth", synth=SYNTH)
    np.random.seed(0)
    clips = [dataset[0]["inputs"] for _ in range(4)]
    assert clips[0].shape == (8, 3, 28, 28)
    assert any(not torch.equal(clips[0], other) for other in clips[1:])


def test_real_layout_and_frame_folders(tmp_path):
    benchmark = get_benchmark("hmdb51")
    lists = store_splits(benchmark, split_source("hmdb51")).lists
    for media in ("video", "frames"):
        root = tmp_path / media
        make_standin_tree(benchmark, lists, root, classes_per_split=2, per_class=2, media=media)
        prepare_benchmark(
            benchmark, lists, root, prepared_folder(benchmark), media=media, progress=False
        )
        dataset = _dataset(benchmark="hmdb51", decoder="frames" if media == "frames" else "decord")
        assert len(dataset) == 4
        sample = dataset[3]
        assert sample["inputs"].shape == (8, 3, 28, 28)
        info = dataset.get_data_info(3)
        listed = {(e.class_name, e.video_id) for e in lists["test"].entries}
        assert (info["class_name"], info["video_id"]) in listed
        assert sample["data_samples"].metainfo["video_id"] == info["video_id"]


def test_unknown_split_and_decoder():
    with pytest.raises(FsarbenchError, match="unknown split"):
        _dataset(split="dev", benchmark="synth")
    with pytest.raises(FsarbenchError, match="unknown decoder"):
        build_pipeline(PROTOCOL, train=False, decoder="ffmpeg")


def test_pipeline_is_tsn_sampling_with_centre_at_test():
    test = build_pipeline(PROTOCOL, train=False)
    train = build_pipeline(PROTOCOL, train=True)
    sample = next(step for step in test if step["type"] == "mmaction.SampleFrames")
    assert sample["num_clips"] == 8 and sample["clip_len"] == 1 and sample["test_mode"] is True
    assert [s["type"] for s in test][-3:] == [
        "mmaction.CenterCrop",
        "mmaction.FormatShape",
        "mmaction.PackActionInputs",
    ]
    assert "mmaction.Flip" in [s["type"] for s in train]
    assert "mmaction.Flip" not in [
        s["type"] for s in build_pipeline({**PROTOCOL, "hflip": False}, train=True)
    ]


def test_pyav_on_webm_is_refused_with_the_fix_before_decoding(tmp_path):
    """SSv2's webm videos record no frame count, which MMAction2's PyAV decoder samples from:
    the dataset refuses that pairing at once instead of failing on the first clip."""
    benchmark = get_benchmark("ssv2-small")
    lists = store_splits(benchmark, split_source("ssv2-small")).lists
    root = tmp_path / "ssv2"
    make_standin_tree(benchmark, lists, root, classes_per_split=1, per_class=2, extension=".webm")
    prepare_benchmark(benchmark, lists, root, prepared_folder(benchmark), progress=False)
    with pytest.raises(FsarbenchError, match="pyav decoder cannot read the 2 webm") as error:
        _dataset(benchmark="ssv2-small", decoder="pyav")
    assert "decord" in error.value.fix
    assert _dataset(benchmark="ssv2-small", decoder="decord")[0]["inputs"].shape == (8, 3, 28, 28)
