"""Embedding throughput of the backbones at their real size (frames per second), as the
harness runs them: ``FewShotRecognizer.embed`` on uint8 clips of 8 frames at 224 px, random
weights (speed does not depend on their values), batches of videos, optional autocast.

The naive way for the ratio: one video per forward (batch 1), the way a per-episode loop
embeds a clip at a time.

    python tools/speed_backbones.py                              # CPU, float32, batch 4
    python tools/speed_backbones.py --device cuda --amp bf16 --batch 32
    python tools/speed_backbones.py --backbones resnet50 --seconds 30
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from fsarbench.backbones import backbone_info
from fsarbench.registry import MODELS
from fsarbench.runtime import check_amp, resolve_device

FRAMES, SIZE = 8, 224


def build(backbone: str, device: str, amp: str | None):
    torch.manual_seed(0)
    # ProtoNet reads pooled features: the backbone's cost, with a head that adds nothing
    model = MODELS.build(dict(type="protonet", backbone=backbone_info(backbone).config))
    model.amp = amp
    return model.to(device).eval()


def frames_per_second(model, batch: int, seconds: float, device: str) -> float:
    clips = torch.randint(0, 256, (batch, FRAMES, 3, SIZE, SIZE), dtype=torch.uint8)
    with torch.inference_mode():
        model.embed(clips)  # warm-up: kernels, allocator, autotuning
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds or done == 0:
            model.embed(clips)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            done += batch * FRAMES
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backbones", default="resnet50,clip-vit-b16,videomae-vit-b", help="comma-separated"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", choices=("bf16", "fp16"), default=None)
    parser.add_argument("--batch", type=int, default=4, help="videos per forward")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    args = parser.parse_args()
    device = resolve_device(args.device)
    check_amp(args.amp, device)
    rows = []
    for name in [b.strip() for b in args.backbones.split(",") if b.strip()]:
        model = build(name, device, args.amp)
        batched = frames_per_second(model, args.batch, args.seconds, device)
        single = frames_per_second(model, 1, args.seconds, device)
        rows.append(
            {
                "backbone": name,
                "frames/s (batch)": round(batched, 1),
                "frames/s (1 video)": round(single, 1),
                "ratio": round(batched / single, 2),
            }
        )
        del model
    threads = torch.get_num_threads()
    where = torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"
    print(
        f"{where}, {threads} threads, {args.amp or 'float32'}, {FRAMES} frames at {SIZE} px, "
        f"batch {args.batch} videos"
    )
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
