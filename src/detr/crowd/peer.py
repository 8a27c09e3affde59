"""The NMS peer: torchvision's FCOS with a ResNet-18 FPN, from scratch like our small DETR,
trained for a wall-clock budget and scored by the same code.

FCOS rather than Faster R-CNN: on this CPU a Faster R-CNN R18-FPN step on
four 128-px images took 0.5-2.3 s (RoIAlign's backward dominates), FCOS
0.18 s, so FCOS gets about 3x the updates in the same budget.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision.models.detection import FCOS
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops import box_convert
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.transforms import v2
from tqdm import tqdm

from detr.data.coco import CocoDetection
from detr.data.sources import EpochSampler, SeededAugmentation

log = logging.getLogger(__name__)

PEER_NAME = "FCOS R18-FPN"


def build_peer(num_classes: int, image_size: int, nms_iou: float = 0.6) -> FCOS:
    """FCOS, ResNet-18 FPN (P3-P7) with live BatchNorm, no pretrained weights, torchvision's
    default anchors and its standard class-wise NMS at 0.6. Images keep their size
    (`image_size`: the short side). Detections down to score 0.05, 100 an image, as COCO
    evaluation expects."""
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, norm_layer=nn.BatchNorm2d,
                                   trainable_layers=5, returned_layers=[2, 3, 4],
                                   extra_blocks=LastLevelP6P7(256, 256))
    return FCOS(backbone, num_classes=num_classes + 1, min_size=image_size, max_size=2 * image_size,
                nms_thresh=nms_iou, score_thresh=0.05, detections_per_img=100)


class PeerTargets(v2.Transform):
    """Our dataset's raw items -> what torchvision detectors take: [0, 1] image, absolute xyxy
    boxes, labels 1..K (0 is their background)."""

    def forward(self, image, target):
        image = v2.functional.to_dtype(image, torch.float32, scale=True).as_subclass(torch.Tensor)
        return image, {"boxes": target["boxes"].as_subclass(torch.Tensor).float(),
                       "labels": target["labels"] + 1, "image_id": target["image_id"]}


def peer_transforms(train: bool) -> v2.Compose:
    steps = [v2.RandomHorizontalFlip()] if train else []
    return v2.Compose(steps + [PeerTargets()])


def _as_lists(batch):
    images, targets = zip(*batch)
    return list(images), list(targets)


def train_peer(model: FCOS, dataset: CocoDetection, minutes: float, batch_size: int = 4,
               lr: float = 0.01, drop_fraction: float = 0.85, seed: int = 0,
               progress: bool = True) -> dict[str, Any]:
    """SGD with momentum (torchvision's detection recipe), gradient clipping, a linear warm-up
    and a x0.1 drop once `drop_fraction` of the budget has passed, for `minutes` of
    wall-clock time (at least one step). Returns the step count and the minutes."""
    torch.manual_seed(seed)
    sampler = EpochSampler(len(dataset), seed)
    loader = DataLoader(SeededAugmentation(dataset, seed), batch_size=batch_size, sampler=sampler,
                        collate_fn=_as_lists, drop_last=len(dataset) >= 2 * batch_size)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    warmup = 300
    model.train()
    device = next(model.parameters()).device
    started, step, epoch, dropped = time.monotonic(), 0, 0, False
    bar = tqdm(desc=f"train {PEER_NAME}", disable=not progress, leave=False, unit="step")
    while True:
        sampler.set_epoch(epoch)
        for images, targets in loader:
            elapsed = (time.monotonic() - started) / 60
            if not dropped and elapsed > drop_fraction * minutes:
                dropped = True
            for group in optimizer.param_groups:
                group["lr"] = lr * min(1.0, (step + 1) / warmup) * (0.1 if dropped else 1.0)
            losses = model([i.to(device) for i in images],
                           [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device)} for t in targets])
            loss = sum(losses.values())
            if not math.isfinite(float(loss.detach())):
                raise RuntimeError(f"{PEER_NAME} loss became {float(loss)} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            optimizer.step()
            step += 1
            bar.update()
            if step % 20 == 0:
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            if time.monotonic() - started > minutes * 60:
                bar.close()
                return {"steps": step, "minutes": (time.monotonic() - started) / 60}
        epoch += 1


@torch.no_grad()
def predict_peer(model: FCOS, dataset: CocoDetection, batch_size: int = 8,
                 progress: bool = True) -> list[dict[str, Any]]:
    """COCO result records for every image of `dataset` (built with `peer_transforms(False)`)."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=_as_lists)
    device = next(model.parameters()).device
    results = []
    for images, targets in tqdm(loader, desc=f"eval {PEER_NAME}", disable=not progress, leave=False):
        for target, detections in zip(targets, model([i.to(device) for i in images])):
            xywh = box_convert(detections["boxes"], "xyxy", "xywh").cpu()
            for box, score, label in zip(xywh.tolist(), detections["scores"].tolist(),
                                         detections["labels"].tolist()):
                results.append({"image_id": int(target["image_id"]),
                                "category_id": dataset.categories.ids[label - 1],
                                "bbox": [round(v, 2) for v in box], "score": round(score, 5)})
    return results
