"""Inference speed: this DETR against Hugging Face's DetrForObjectDetection, same weights.

    python benchmarks/inference.py --batch 1 --runs 5

Builds transformers' model offline (random weights, timm ResNet-50), maps its
weights into ours, and times both on the same input in one process: median
of --runs after one warm-up, fp32, torch.inference_mode, ours with the
channels-last backbone that Predictor uses. Prints a table and the largest
output difference (random weights amplify the layouts' fp32 rounding). Not a test.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch


def _time(forward, runs: int) -> float:
    forward()  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        forward()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[1])
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1066)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    import transformers

    from detr.config import preset
    from detr.model import build_model
    from detr.weights.huggingface import hf_to_ours

    device = torch.device(args.device)
    hf_config = transformers.DetrConfig(use_timm_backbone=True, backbone="resnet50",
                                        use_pretrained_backbone=False, num_labels=91)
    hf = transformers.DetrForObjectDetection(hf_config).eval().to(device)
    config = preset("detr_r50").model
    config.backbone.pretrained = False
    ours = build_model(config).eval()
    ours.load_state_dict(hf_to_ours({k: v.cpu() for k, v in hf.state_dict().items()}))
    ours.backbone.use_channels_last()  # as detr.load / Predictor run it
    ours.to(device)

    print(f"DETR R50 inference, fp32, {args.height}x{args.width}, median of {args.runs} runs after warm-up")
    print(f"device: {device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), "
          f"torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"{'batch':>5} {'ours s':>8} {'HF s':>8} {'HF/ours':>8} {'max |logits diff|':>18} {'max |box diff|':>15}")
    for batch in args.batch:
        images = torch.randn(batch, 3, args.height, args.width, device=device)
        with torch.inference_mode():
            ours_out = ours(images)
            hf_out = hf(pixel_values=images)
            ours_s = _time(lambda: ours(images), args.runs)
            hf_s = _time(lambda: hf(pixel_values=images), args.runs)
        logits = (ours_out["pred_logits"] - hf_out.logits).abs().max().item()
        boxes = (ours_out["pred_boxes"] - hf_out.pred_boxes).abs().max().item()
        print(f"{batch:5d} {ours_s:8.3f} {hf_s:8.3f} {hf_s / ours_s:8.2f} {logits:18.2e} {boxes:15.2e}")


if __name__ == "__main__":
    main()
