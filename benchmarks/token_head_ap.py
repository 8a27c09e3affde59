"""Diagnostic: how far the decoder lags its own encoder.

    python benchmarks/token_head_ap.py runs/x/last.pt data/general

Scores a checkpoint's val detections twice with the same COCO code: the model as it
ships (the decoder's set, no NMS), and its encoder tokens' own class and box heads
(query selection's proposals) read as a dense detector
with class-wise NMS@0.6, 100 boxes an image. The second is not a product path: it
says whether slow convergence is in the features (both low) or in the decoder's
one-to-one set (tokens high, decoder low). Then, for both, the share of val objects
that some box covers at IoU 0.5 and how often the best-overlapping box names the
right class (1 / classes is chance): localisation or classification. Raw weights,
not EMA. `--tokens-out FILE` keeps the tokens' detections as COCO results (for
benchmarks/agnostic_ap.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torchvision.ops import batched_nms, box_convert, box_iou

from detr.config import ExperimentConfig
from detr.data.coco import CocoDetection
from detr.data.sources import eval_loader, find_split
from detr.data.transforms import val_transforms
from detr.engine.checkpoint import load_checkpoint
from detr.engine.evaluate import coco_evaluate, predict_dataset
from detr.model import build_model
from detr.postprocess import class_scores


@torch.no_grad()
def token_detections(model, loader, categories, iou: float = 0.6) -> list[dict]:
    model.eval()
    model.training = True  # the top level only: token heads run, BatchNorm and dropout stay in eval
    results = []
    for images, mask, targets in loader:
        outputs = model(images, mask)
        tokens = outputs.get("enc_outputs")
        if tokens is None:
            raise SystemExit("this model has no token heads (model.query_selection)")
        for i, target in enumerate(targets):
            valid = tokens["valid"][i]
            scores, labels = class_scores(tokens["pred_logits"][i][valid])
            height, width = target["orig_size"].tolist()
            boxes = box_convert(tokens["pred_boxes"][i][valid], "cxcywh", "xyxy") * torch.tensor(
                [width, height, width, height])
            keep = batched_nms(boxes, scores, labels, iou)[:100]
            for box, score, label in zip(box_convert(boxes[keep], "xyxy", "xywh").tolist(), scores[keep].tolist(),
                                         labels[keep].tolist()):
                results.append({"image_id": int(target["image_id"]), "category_id": categories.ids[label],
                                "bbox": box, "score": score})
    model.eval()
    return results


@torch.no_grad()
def cover_and_classify(model, loader) -> dict[str, tuple[float, float]]:
    """{"decoder" | "tokens": (objects covered at IoU >= 0.5, class accuracy of the best-
    overlapping box over the covered objects)}, over every box each one predicts."""
    model.eval()
    model.training = True  # as in token_detections
    counts = {"decoder": [0, 0], "tokens": [0, 0]}
    objects = 0
    for images, mask, targets in loader:
        outputs = model(images, mask)
        tokens = outputs["enc_outputs"]
        queries = model.config.num_queries  # the first group: the one inference reads
        for i, target in enumerate(targets):
            truth = box_convert(target["boxes"], "cxcywh", "xyxy")
            objects += len(truth)
            if not len(truth):
                continue
            valid = tokens["valid"][i]
            sets = {"decoder": (outputs["pred_logits"][i, :queries], outputs["pred_boxes"][i, :queries]),
                    "tokens": (tokens["pred_logits"][i][valid], tokens["pred_boxes"][i][valid])}
            for name, (logits, boxes) in sets.items():
                overlap = box_iou(truth, box_convert(boxes, "cxcywh", "xyxy"))
                covered = overlap.amax(1) >= 0.5
                named = logits[overlap.argmax(1)][:, :-1].argmax(-1) == target["labels"]
                counts[name][0] += int(covered.sum())
                counts[name][1] += int((covered & named).sum())
    model.eval()
    return {name: (covered / max(objects, 1), right / max(covered, 1)) for name, (covered, right) in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("data", help="dataset folder with train/ and val/ splits")
    parser.add_argument("--tokens-out", help="write the tokens' detections here (COCO results json)")
    args = parser.parse_args()
    payload = load_checkpoint(args.checkpoint)
    config = ExperimentConfig.from_dict(payload["config"])
    model = build_model(config.model)
    model.load_state_dict(payload["model"])
    train, val = find_split(args.data, "train"), find_split(args.data, "val")
    categories = CocoDetection(train.images, train.annotations, val_transforms(config.data)).categories
    val_set = CocoDetection(val.images, val.annotations, val_transforms(config.data), categories)
    loader = eval_loader(val_set, 8, 0)
    truth = val_set.ground_truth()
    decoder, _, _ = coco_evaluate(truth, predict_dataset(model, loader, "cpu", False,
                                                         class_pairs=config.model.class_pairs))
    token_results = token_detections(model, loader, categories)
    if args.tokens_out:
        Path(args.tokens_out).write_text(json.dumps(token_results))
    tokens, _, _ = coco_evaluate(truth, token_results)
    print(f"{'detections':<34} {'AP':>7} {'AP50':>7}")
    print(f"{'decoder (the model, no NMS)':<34} {decoder['AP']:>7.4f} {decoder['AP50']:>7.4f}")
    print(f"{'encoder tokens + NMS@0.6':<34} {tokens['AP']:>7.4f} {tokens['AP50']:>7.4f}")
    print(f"\n{'boxes':<12} {'objects covered @0.5':>21} {'class right (best box)':>23}   "
          f"(chance: {1 / config.model.num_classes:.2f})")
    for name, (covered, right) in cover_and_classify(model, loader).items():
        print(f"{name:<12} {covered:>21.3f} {right:>23.3f}")


if __name__ == "__main__":
    main()
