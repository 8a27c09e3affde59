"""Full-attention encoder against the deformable encoder: forward + backward time on CPU.

The model is the `small` preset's (ResNet-18 to layer3, width 128, 3+3
layers, batch of 2) with only the encoder choice and the feature levels
changed; one thread, the median of --repeats timed runs after one warm-up.

    PYTHONPATH=src python benchmarks/deformable_attention.py --repeats 5
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from detr.config import preset
from detr.model import build_model

VARIANTS = {  # name: (encoder_attention, feature_levels)
    "full, 1 level (paper)": ("full", 1),
    "deformable, 1 level": ("deformable", 1),
    "deformable, 3 levels": ("deformable", 3),
}


def time_step(model: torch.nn.Module, images: torch.Tensor, repeats: int) -> float:
    """Median seconds of forward + backward of the outputs' sum."""
    times = []
    for run in range(repeats + 1):
        start = time.perf_counter()
        out = model(images)
        (out["pred_logits"].sum() + out["pred_boxes"].sum()).backward()
        if run:  # the first run warms up allocators and oneDNN
            times.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    base = preset("small").model
    print(f"{'input':>6} | {'encoder':<22} | {'tokens':>6} | {'fwd+bwd s':>9}")
    print("-" * 54)
    for size in args.sizes:
        images = torch.randn(args.batch, 3, size, size)
        for name, (attention, levels) in VARIANTS.items():
            config = dataclasses.replace(base, encoder_attention=attention, feature_levels=levels, query_groups=1)
            model = build_model(config).train()
            with torch.no_grad():
                tokens = _token_count(model, images[:1])
            seconds = time_step(model, images, args.repeats)
            print(f"{size:>6} | {name:<22} | {tokens:>6} | {seconds:>9.3f}", flush=True)


def _token_count(model, images: torch.Tensor) -> int:
    if model.multi_scale is None:
        features, _ = model.backbone(images)
        return features.shape[-2] * features.shape[-1]
    levels = model.multi_scale(model.backbone.forward_levels(images), None, model.position_encoding)[3]
    return sum(h * w for h, w in levels.shapes)


if __name__ == "__main__":
    main()
