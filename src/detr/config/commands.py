"""Settings of the commands beside training: the crowd benchmark and the synthetic data generators."""

from __future__ import annotations

from dataclasses import dataclass

from detr.config.presets import DEFAULT_PRESET


@dataclass(frozen=True)
class CrowdBenchmarkConfig:
    """`detr crowd --train`: DETR against an NMS detector on crowded images, same budget."""

    minutes: float = 12.0  # wall-clock training time of each detector
    train_images: int = 4000  # of the built-in crowd data (ignored with --data)
    val_images: int = 1000  # hundreds of objects in every overlap bin
    detr_preset: str = DEFAULT_PRESET
    lr_drop_fraction: float = 0.85  # both detectors drop their lr x0.1 here
    peer_lr: float = 0.01
    peer_batch_size: int = 4
    detr_nms_iou: float = 0.45  # YOLOv5's default, the setting that motivates the benchmark
    figure_images: int = 3
    seed: int = 0
    # The YOLO peer (only when Ultralytics is installed): Ultralytics' own defaults otherwise.
    yolo_model: str = "yolov8n.yaml"  # built from its yaml, no pretrained weights
    yolo_workers: int = 2  # data-loader processes
    yolo_score_floor: float = 0.001  # the lowest score kept, as Ultralytics' own COCO evaluation keeps


@dataclass(frozen=True)
class SynthConfig:
    """The built-in dataset (`detr synth --kind builtin`, data/synthetic.py)."""

    image_size: int = 128
    train_images: int = 4000
    val_images: int = 300
    min_objects: int = 1
    max_objects: int = 6
    min_size: int = 14
    max_size: int = 48
    crowded_fraction: float = 0.25
    seed: int = 0


@dataclass(frozen=True)
class GeneralSynthConfig:
    """`detr synth --kind general` (data/synthetic_general.py)."""

    train_images: int = 2000
    val_images: int = 200
    min_side: int = 160  # width and height are drawn independently from min_side..max_side
    max_side: int = 256
    min_objects: int = 1
    max_objects: int = 8
    min_size: int = 12
    max_size: int = 64
    max_iou: float = 0.5  # objects may overlap, at most this much
    grey_fraction: float = 0.2
    jpeg_fraction: float = 0.3
    min_jpeg_quality: int = 60
    max_jpeg_quality: int = 90
    seed: int = 0


@dataclass(frozen=True)
class DenseSynthConfig:
    """`detr synth --kind dense` (data/synthetic_dense.py)."""

    train_images: int = 1000
    val_images: int = 200
    min_side: int = 192  # width and height are drawn independently from min_side..max_side
    max_side: int = 256
    min_objects: int = 15
    max_objects: int = 40
    min_size: int = 8
    max_size: int = 24
    min_iou: float = 0.1  # IoU of neighbours in a row or cluster
    max_iou: float = 0.85
    seed: int = 0


def crowd_quick() -> CrowdBenchmarkConfig:
    """A smoke test in seconds: tiny data, a few steps of each detector."""
    return CrowdBenchmarkConfig(minutes=0.05, train_images=16, val_images=8, figure_images=1)
