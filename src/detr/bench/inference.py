"""Inference speed: this DETR against Hugging Face's DetrForObjectDetection, same weights.

    detr benchmark inference --batch 1 8 --runs 5
    python benchmarks/inference.py --batch 8 --precision bf16 --compile   (on a GPU)

Builds transformers' model offline (random weights, timm ResNet-50), maps its
weights into ours, and times both on the same input in one process: median
of --runs after one warm-up, torch.inference_mode, ours as Predictor runs
it (BatchNorms folded into the convolutions, channels-last backbone), in --precision (HF always in
fp32, the reference), optionally through torch.compile. Prints a table with
the throughput ratio and the largest output differences from HF's fp32
outputs (random weights amplify the layouts' rounding); on CUDA also each
one's peak memory. Not a test.
"""

from __future__ import annotations

import argparse
import platform

import torch

from detr.bench.timing import median_time
from detr.precision import PRECISIONS, autocast


def _gib(peak: int) -> str:
    return f"{peak / 2**30:.2f}" if peak else "-"  # measured on CUDA only


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="detr benchmark inference", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[1])
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1066)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="ours; HF always runs fp32")
    parser.add_argument("--compile", action="store_true", help="ours through torch.compile (warm-up compiles)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    import transformers

    from detr.config import preset
    from detr.inference import detection_copy
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
    ours = detection_copy(ours)  # as detr.load / Predictor run it
    ours.to(device)
    forward = torch.compile(ours, dynamic=True) if args.compile else ours

    def run_ours(images):
        with autocast(device, args.precision):
            return forward(images)

    name = device.type if device.type != "cuda" else torch.cuda.get_device_name(device)
    print(f"DETR R50 inference, ours {args.precision}{' compiled' if args.compile else ''} against HF fp32, "
          f"{args.height}x{args.width}, median of {args.runs} runs after warm-up")
    print(f"device: {name} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), "
          f"torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"{'batch':>5} {'ours s':>8} {'HF s':>8} {'ours img/s':>10} {'HF img/s':>9} {'HF/ours':>8} "
          f"{'max |logits diff|':>18} {'max |box diff|':>15} {'ours GiB':>9} {'HF GiB':>7}")
    for batch in args.batch:
        images = torch.randn(batch, 3, args.height, args.width, device=device)
        with torch.inference_mode():
            ours_out = run_ours(images)
            hf_out = hf(pixel_values=images)
            ours_s, ours_peak = median_time(lambda: run_ours(images), args.runs, device,
                                            warmup=2 if args.compile else 1)
            hf_s, hf_peak = median_time(lambda: hf(pixel_values=images), args.runs, device)
        logits = (ours_out.logits.float() - hf_out.logits).abs().max().item()
        boxes = (ours_out.boxes.float() - hf_out.pred_boxes).abs().max().item()
        print(f"{batch:5d} {ours_s:8.3f} {hf_s:8.3f} {batch / ours_s:10.2f} {batch / hf_s:9.2f} {hf_s / ours_s:8.2f} "
              f"{logits:18.2e} {boxes:15.2e} {_gib(ours_peak):>9} {_gib(hf_peak):>7}")


if __name__ == "__main__":
    main()
