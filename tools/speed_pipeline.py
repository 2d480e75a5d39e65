"""Clips per second through the real train and test pipelines, at the real benchmarks'
resolution, per decoder: how many data-loader workers keep a GPU fed.

Writes stand-in videos of real size once under ``--dir``: SSv2-like (webm, VP9, 340x256,
12 fps, 4 s), Kinetics-like (mp4, H.264, 340x256,
25 fps, 10 s) and UCF/HMDB-like frame folders (320x240 JPEGs, 25 fps, 7 s), with moving
content so the codecs do real work. Then every decoder that reads the layout (``decord`` and
``pyav`` for videos, ``frames`` for folders) runs the protocol's train and test pipelines
(``fsarbench.data.pipelines.build_pipeline``: TSN sampling of 8 frames, short side 256, a 224
crop, flip at train time) over the videos in one process, that is one worker, and prints clips
per CPU-second and per second.

    python tools/speed_pipeline.py [--videos 12] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

LAYOUTS = {
    # name: (container suffix or "frames", codec, width, height, fps, seconds)
    "ssv2 (webm, VP9)": (".webm", "libvpx-vp9", 340, 256, 12, 4),
    "kinetics (mp4, H.264)": (".mp4", "libx264", 340, 256, 25, 10),
    "ucf/hmdb (JPEG frames)": ("frames", None, 320, 240, 25, 7),
}
DECODERS_FOR = {".webm": ("decord", "pyav"), ".mp4": ("decord", "pyav"), "frames": ("frames",)}


def moving_frames(width: int, height: int, count: int, seed: int):
    """``count`` RGB frames ``[H, W, 3]`` uint8: a textured background and blocks that move."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    background = np.kron(background, np.ones((8, 8, 1), np.uint8))[:height, :width]
    for t in range(count):
        frame = np.roll(background, 3 * t, axis=1).copy()
        for block in range(4):
            x = (37 * block + 9 * t) % (width - 40)
            y = (53 * block + 5 * t) % (height - 40)
            frame[y : y + 40, x : x + 40] = (60 * block) % 256
        yield frame


def write_video(path: Path, codec: str, width: int, height: int, fps: int, seconds: int, seed):
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for image in moving_frames(width, height, fps * seconds, seed):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_frames(folder: Path, width: int, height: int, fps: int, seconds: int, seed) -> int:
    import cv2

    from fsarbench.benchmarks.prepare import FRAME_TEMPLATE

    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for count, image in enumerate(moving_frames(width, height, fps * seconds, seed), start=1):
        cv2.imwrite(str(folder / FRAME_TEMPLATE.format(count)), image[..., ::-1])
    return count


def stand_ins(root: Path, videos: int) -> dict[str, list[dict]]:
    """Per layout, the pipeline inputs of its stand-in videos (written once)."""
    from fsarbench.benchmarks.prepare import FRAME_TEMPLATE

    items = {}
    for name, (suffix, codec, width, height, fps, seconds) in LAYOUTS.items():
        folder = root / name.split()[0].replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        items[name] = []
        for index in range(videos):
            if suffix == "frames":
                frames = folder / f"v{index:03d}"
                total = len(list(frames.glob("*.jpg"))) if frames.is_dir() else 0
                if total != fps * seconds:
                    total = write_frames(frames, width, height, fps, seconds, index)
                items[name].append(
                    dict(
                        frame_dir=str(frames),
                        total_frames=total,
                        filename_tmpl=FRAME_TEMPLATE,
                        start_index=1,
                        label=0,
                        video_id=str(index),
                        modality="RGB",
                    )
                )
                continue
            path = folder / f"v{index:03d}{suffix}"
            if not path.exists():
                write_video(path, codec, width, height, fps, seconds, index)
            info = dict(filename=str(path), label=0, start_index=0, video_id=str(index))
            items[name].append({**info, "modality": "RGB"})
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=12, help="stand-in videos per layout")
    parser.add_argument("--repeats", type=int, default=2, help="passes over the videos")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/fsarbench-speed-pipeline"))
    args = parser.parse_args()

    import pandas as pd
    from mmengine.dataset import Compose

    import fsarbench.registry  # noqa: F401  (MMAction2's transforms, registered)
    from fsarbench._quiet import quiet_mmengine_logger
    from fsarbench.configs import CONFIG_ROOT, read_config
    from fsarbench.data.pipelines import build_pipeline

    quiet_mmengine_logger()
    protocol = read_config(CONFIG_ROOT / "_base_" / "protocols" / "trx_5way.py")["protocol"]
    items = stand_ins(args.dir, args.videos)
    rows = []
    for layout, inputs in items.items():
        suffix = LAYOUTS[layout][0]
        for decoder in DECODERS_FOR[suffix]:
            for train in (True, False):
                row = {
                    "layout": layout,
                    "decoder": decoder,
                    "pipeline": "train" if train else "test",
                }
                pipeline = Compose(build_pipeline(protocol, train=train, decoder=decoder))
                try:
                    with np.errstate(all="ignore"):
                        pipeline(dict(inputs[0]))  # warm-up: imports and first opens
                except Exception as error:  # a decoder that cannot read the layout is a row
                    rows.append({**row, "error": f"{type(error).__name__}: {error}"})
                    print(pd.DataFrame(rows[-1:]).to_string(index=False, header=False))
                    continue
                wall, cpu = time.perf_counter(), time.process_time()
                clips = 0
                for _ in range(args.repeats):
                    for item in inputs:
                        out = pipeline(dict(item))
                        clips += 1
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                rows.append(
                    {
                        **row,
                        "clip": "x".join(map(str, out["inputs"].shape)),
                        "clips": clips,
                        "clips_per_cpu_s": round(clips / cpu, 1),
                        "clips_per_s": round(clips / wall, 1),
                    }
                )
                print(pd.DataFrame(rows[-1:]).to_string(index=False, header=False), flush=True)
    print()
    print(
        "one process (one data-loader worker), 8 frames by TSN segments, short side "
        f"{protocol['resize_short']}, {protocol['crop']} crop; {args.videos} stand-in videos "
        f"per layout, {args.repeats} passes"
    )
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
