"""`detr crowd --data D [--checkpoint C]`: the overlap histogram of a dataset and the NMS
ceiling on it, in seconds; with a checkpoint, the model's recall per overlap bin with and
without NMS."""

from __future__ import annotations

import argparse
import math

import torch

from detr.crowd.nms_ceiling import nms_ceiling
from detr.crowd.overlap import BIN_NAMES, histogram
from detr.crowd.recall import apply_nms, recall_by_bin
from detr.data.coco import CocoDetection
from detr.data.sources import eval_loader, find_split
from detr.engine.evaluate import coco_evaluate, predict_dataset
from detr.inference import Predictor

NMS_THRESHOLDS = (0.45, 0.5, 0.6, 0.7)


def ground_truth_boxes(dataset: CocoDetection) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(xyxy boxes, labels) of each image's non-crowd annotations, without reading any pixels."""
    per_image = []
    for image_id in dataset.image_ids:
        anns = [a for a in dataset.annotations[image_id] if not a.get("iscrowd", 0)]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        labels = torch.tensor([dataset.categories.label(a["category_id"]) for a in anns], dtype=torch.int64)
        per_image.append((boxes, labels))
    return per_image


def report(per_image: list[tuple[torch.Tensor, torch.Tensor]], draws: int) -> str:
    counts = histogram(per_image)
    lines = ["objects by their largest IoU with another object of their class:",
             "  " + "  ".join(f"{name:>10}" for name in BIN_NAMES),
             "  " + "  ".join(f"{n:>10d}" for n in counts),
             f"NMS ceiling: share of ground-truth boxes that class-wise NMS keeps (random scores, {draws} draws):"]
    for threshold in NMS_THRESHOLDS:
        shares = nms_ceiling(per_image, threshold, draws)
        cells = "  ".join(f"{'-':>10}" if math.isnan(s) else f"{s:>10.3f}" for s in shares)
        lines.append(f"  NMS@{threshold:<4} {cells}")
    return "\n".join(lines)


def detector_report(name: str, ground_truth: dict, results: list[dict]) -> list[str]:
    """One line per match IoU: recall per overlap bin, then COCO AP of the whole set."""
    stats, _, _ = coco_evaluate(ground_truth, results)
    lines = []
    for match_iou in (0.5, 0.75):
        shares = recall_by_bin(ground_truth, results, match_iou)
        cells = "  ".join(f"{'-':>10}" if math.isnan(s) else f"{s:>10.3f}" for s in shares)
        lines.append(f"  {name:<14} R@{match_iou:<4} {cells}   AP {stats['AP']:.3f}")
    return lines


def run(args: argparse.Namespace) -> None:
    split = find_split(args.data, args.split)
    predictor = Predictor.from_checkpoint(args.checkpoint, args.device) if args.checkpoint else None
    dataset = CocoDetection(split.images, split.annotations, predictor and predictor.transforms,
                            predictor and predictor.categories)
    print(f"{args.data} ({args.split}: {len(dataset)} images)")
    print(report(ground_truth_boxes(dataset), args.draws))
    if predictor is None:
        return
    results = predict_dataset(predictor.model, eval_loader(dataset, 8, 0), predictor.device)
    ground_truth = dataset.ground_truth()
    print(f"recall per overlap bin (COCO matching, 100 detections an image) of {args.checkpoint}:")
    print("  " + " " * 22 + "  ".join(f"{name:>10}" for name in BIN_NAMES))
    for line in detector_report("DETR", ground_truth, results):
        print(line)
    for line in detector_report("DETR+NMS@0.45", ground_truth, apply_nms(results, 0.45)):
        print(line)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("crowd", help="how crowded a dataset is, and what NMS would remove from it")
    parser.add_argument("--data", required=True, help="dataset folder")
    parser.add_argument("--split", default="val")
    parser.add_argument("--draws", type=int, default=5, help="random scorings averaged for the NMS ceiling")
    parser.add_argument("--checkpoint", help="also score this model per overlap bin, as is and with NMS@0.45")
    parser.add_argument("--device")
    parser.set_defaults(run=run)
