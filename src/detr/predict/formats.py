"""Writing predictions for other tools: our detections json, Pascal VOC xml, YOLO txt."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.ops import box_convert, clip_boxes_to_image

from detr.inference import Detections


@dataclass
class Prediction:
    """The detections of one image or video frame.

    `name`: the stem of every file written for it (unique within a run);
    `source`: the image file, or the video for a frame; `frame`: the frame's
    index in the video or frame folder, None for a lone image.
    """

    name: str
    source: Path
    width: int
    height: int
    depth: int
    detections: Detections
    frame: int | None = None


def write_json(predictions: list[Prediction], out_dir: Path, class_names: list[str]) -> Path:
    """All detections in one json, one record an image or frame (xyxy pixel boxes)."""
    records = []
    for p in predictions:
        where = {"image": str(p.source)} if p.frame is None else {"video": str(p.source), "frame": p.frame}
        records.append({**where, **p.detections.to_dict()})
    path = out_dir / "detections.json"
    path.write_text(json.dumps(records, indent=1))
    return path


def _clipped(p: Prediction) -> torch.Tensor:
    return clip_boxes_to_image(p.detections.boxes.double(), (p.height, p.width))


def voc_tree(p: Prediction) -> ET.ElementTree:
    """Pascal VOC: integer 1-based inclusive pixel indices, as the VOC devkit counts them,
    so the xyxy box [x0, x1) becomes xmin = round(x0) + 1, xmax = round(x1)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = p.source.parent.name
    ET.SubElement(root, "filename").text = p.source.name if p.frame is None else f"{p.name}.png"
    ET.SubElement(root, "path").text = str(p.source)
    size = ET.SubElement(root, "size")
    for tag, value in (("width", p.width), ("height", p.height), ("depth", p.depth)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for name, score, box in zip(p.detections.names, p.detections.scores.tolist(), _clipped(p).tolist()):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "0"
        ET.SubElement(obj, "score").text = f"{score:.6f}"
        xmin, ymin = min(round(box[0]) + 1, p.width), min(round(box[1]) + 1, p.height)
        xmax, ymax = round(box[2]), round(box[3])
        bndbox = ET.SubElement(obj, "bndbox")
        # A box thinner than a pixel still covers the pixel it starts in.
        for tag, value in (("xmin", xmin), ("ymin", ymin), ("xmax", max(xmax, xmin)), ("ymax", max(ymax, ymin))):
            ET.SubElement(bndbox, tag).text = str(value)
    ET.indent(root)
    return ET.ElementTree(root)


def write_voc(predictions: list[Prediction], out_dir: Path, class_names: list[str]) -> Path:
    """One Pascal VOC xml per image or frame, in out_dir/voc."""
    folder = out_dir / "voc"
    folder.mkdir(parents=True, exist_ok=True)
    for p in predictions:
        voc_tree(p).write(folder / f"{p.name}.xml", encoding="utf-8", xml_declaration=True)
    return folder


def yolo_lines(p: Prediction) -> list[str]:
    """`class cx cy w h score`, the box normalised to the image and clipped to it; class is
    the index in the model's class list."""
    scale = torch.tensor([p.width, p.height, p.width, p.height], dtype=torch.float64)
    boxes = box_convert(_clipped(p), "xyxy", "cxcywh") / scale
    return [f"{label} {' '.join(f'{v:.6f}' for v in box)} {score:.6f}"
            for label, box, score in zip(p.detections.labels.tolist(), boxes.tolist(),
                                         p.detections.scores.tolist())]


def write_yolo(predictions: list[Prediction], out_dir: Path, class_names: list[str]) -> Path:
    """One YOLO txt per image or frame in out_dir/yolo/labels, and out_dir/yolo/classes.txt."""
    folder = out_dir / "yolo"
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    (folder / "classes.txt").write_text("".join(f"{name}\n" for name in class_names))
    for p in predictions:
        lines = yolo_lines(p)
        (folder / "labels" / f"{p.name}.txt").write_text("".join(f"{line}\n" for line in lines))
    return folder


WRITERS = {"coco": write_json, "voc": write_voc, "yolo": write_yolo}
FORMATS = tuple(WRITERS)
