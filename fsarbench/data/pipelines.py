"""MMAction2 pipelines built from a protocol config.

TSN sampling of ``num_frames`` segments, one frame each: a random frame per segment at train
time, the segment centre at test time, so test clips, and with them stored test features, are
a deterministic function of the video. Every transform is MMAction2's own, named with its
``mmaction.`` scope so the configs build under any default scope.
"""

from __future__ import annotations

from collections.abc import Mapping

from fsarbench.errors import FsarbenchError

DECODERS = ("decord", "pyav", "frames")
_DECODE_STEPS = {
    "decord": [dict(type="mmaction.DecordInit", num_threads=1), dict(type="mmaction.DecordDecode")],
    "pyav": [dict(type="mmaction.PyAVInit"), dict(type="mmaction.PyAVDecode")],
    "frames": [dict(type="mmaction.RawFrameDecode")],
}


def build_pipeline(protocol: Mapping, *, train: bool, decoder: str = "decord") -> list[dict]:
    """The transform list for one split.

    ``protocol`` needs ``num_frames``, ``resize_short`` and ``crop``; train pipelines also read
    ``hflip`` (SSv2 has left/right classes that a flip turns into each other, so it is a
    protocol choice, not a constant).
    """
    if decoder not in DECODERS:
        raise FsarbenchError(f"unknown decoder {decoder!r}", f"use one of {', '.join(DECODERS)}")
    decode = _DECODE_STEPS[decoder]
    sample = dict(
        type="mmaction.SampleFrames",
        clip_len=1,
        frame_interval=1,
        num_clips=int(protocol["num_frames"]),
        test_mode=not train,
    )
    steps = [*decode[:-1], sample, decode[-1]] if decoder != "frames" else [sample, *decode]
    steps.append(dict(type="mmaction.Resize", scale=(-1, int(protocol["resize_short"]))))
    crop = int(protocol["crop"])
    if train:
        steps.append(dict(type="mmaction.RandomCrop", size=crop))
        if protocol.get("hflip", False):
            steps.append(dict(type="mmaction.Flip", flip_ratio=0.5))
    else:
        steps.append(dict(type="mmaction.CenterCrop", crop_size=crop))
    steps.append(dict(type="mmaction.FormatShape", input_format="NCHW"))
    steps.append(dict(type="mmaction.PackActionInputs", meta_keys=("video_id", "img_shape")))
    return steps
