"""The YOLO peer: Ultralytics' YOLOv8n built from its yaml (no pretrained weights), trained
from scratch with Ultralytics' own defaults for the same wall-clock budget on the same
split, its val detections scored by the same code as the other detectors.

Ultralytics is AGPL-3.0, so it is never a dependency of this package: it is imported
here, lazily, only when installed, and the benchmark runs without this row otherwise.
It runs offline: its settings live in the run folder, it is told it has no network,
plots are off and nothing is downloaded (no weights, no fonts).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Sequence
from unittest import mock

import torch
from torchvision.ops import box_convert

from detr.config import CrowdBenchmarkConfig
from detr.crowd.yolo_labels import write_yolo_dataset
from detr.data.coco_records import Categories
from detr.data.sources import Split, validated_split

log = logging.getLogger(__name__)

INSTALL_HINT = ("YOLO peer left out: `pip install ultralytics` adds it to this benchmark (AGPL-3.0, "
                "used by `detr crowd --train` only, never a dependency of detr)")
STRIDE = 32  # YOLOv8's largest stride: its input sides are multiples of it
RUN_FILE = "yolo_run.json"


def yolo_installed() -> bool:
    return importlib.util.find_spec("ultralytics") is not None


def yolo_name(model_yaml: str) -> str:
    """'yolov8n.yaml' -> 'YOLOv8n', the row's name."""
    stem = Path(model_yaml).stem
    return "YOLO" + stem[4:] if stem.lower().startswith("yolo") else stem


def yolo_image_size(image_size: int) -> int:
    """The other detectors' image size, rounded up to the stride (as Ultralytics itself would)."""
    return max(STRIDE, math.ceil(image_size / STRIDE) * STRIDE)


def yolo_records(image_id: int, xyxy: Sequence[Sequence[float]], scores: Sequence[float],
                 classes: Sequence[float], category_ids: Sequence[int]) -> list[dict[str, Any]]:
    """One image's detections (absolute xyxy pixels, class indices into the training split's
    categories) as COCO result records: xywh boxes, COCO category ids."""
    xywh = box_convert(torch.tensor(xyxy, dtype=torch.float64).reshape(-1, 4), "xyxy", "xywh").tolist()
    return [{"image_id": int(image_id), "category_id": category_ids[int(cls)],
             "bbox": [round(v, 2) for v in box], "score": round(float(score), 5)}
            for box, score, cls in zip(xywh, scores, classes)]


def _ultralytics(settings_dir: Path):
    """Ultralytics, imported offline with its settings file in `settings_dir` (read at first import)."""
    settings_dir.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_CONFIG_DIR"] = str(settings_dir.resolve())  # the user's own settings stay untouched
    os.environ["YOLO_OFFLINE"] = "1"  # no connectivity probe, no events, no update checks
    os.environ["YOLO_AUTOINSTALL"] = "False"  # never pip-install a missing requirement
    import ultralytics
    from ultralytics.utils import SETTINGS

    SETTINGS.update({key: False for key in ("sync", "hub", "tensorboard", "wandb", "mlflow", "comet",
                                            "clearml", "dvc", "neptune", "raytune") if key in SETTINGS})
    return ultralytics


def _device_arg(device: torch.device) -> str:
    return "cpu" if device.type == "cpu" else str(device.index or 0)


def train_yolo(config: CrowdBenchmarkConfig, train: Split, val: Split, image_size: int, device: torch.device,
               out: Path, progress: bool) -> tuple[Any, dict[str, Any]]:
    """Ultralytics' trainer with its default hyper-parameters; `time=` (hours) is the budget and
    overrides its epochs. Returns the final (EMA) weights as a YOLO model and the run's numbers."""
    ultralytics = _ultralytics(out / "settings")
    train = validated_split(train)
    val = validated_split(val, train.records.categories, "the training split's")
    dataset_yaml = write_yolo_dataset(train.records, train.images, val.records, val.images, out / "data")
    threads = torch.get_num_threads()  # Ultralytics sets cores - 1 on CPU; keep what the other detectors get
    model = ultralytics.YOLO(config.yolo_model)
    batches = []
    model.add_callback("on_train_start", lambda trainer: torch.set_num_threads(threads))
    model.add_callback("on_train_batch_start", lambda trainer: batches.append(1))  # its end is skipped at the stop
    # Its training's clock: from its first epoch to the end of its last, the validation after it left out.
    clock: dict[str, float] = {}
    model.add_callback("on_train_start", lambda trainer: clock.update(start=time.monotonic()))
    model.add_callback("on_train_epoch_end", lambda trainer: clock.update(end=time.monotonic()))
    try:
        # Plots are off, so no font is needed: skip the font check's download attempt.
        with mock.patch("ultralytics.data.utils.check_font", lambda *args, **kwargs: None):
            model.train(data=str(dataset_yaml), imgsz=yolo_image_size(image_size), time=config.minutes / 60,
                        device=_device_arg(device), workers=config.yolo_workers, seed=config.seed,
                        pretrained=False, amp=False,  # fp32 like DETR, and AMP's check would download weights
                        val=False,  # validating every epoch would spend the budget; DETR evaluates once, after
                        plots=False, project=str(out.resolve()), name="train", exist_ok=True, verbose=progress)
    finally:
        torch.set_num_threads(threads)
    trainer = model.trainer
    # Its EMA is updated once per optimizer step: one per 64 images (nbs) after the warm-up, more often during it.
    run = {"steps": trainer.ema.updates, "batches": len(batches), "batch_size": trainer.batch_size,
           "epochs": trainer.epoch + 1, "weights": str(trainer.last), "image_size": yolo_image_size(image_size),
           "images": len(batches) * trainer.batch_size, "seconds": round(clock.get("end", time.monotonic()) - clock["start"], 1)}
    (out / RUN_FILE).write_text(json.dumps(run, indent=1) + "\n")
    return ultralytics.YOLO(str(trainer.last)), run


def read_yolo_run(folder: Path) -> dict[str, Any]:
    """What `train_yolo` wrote into `folder`: its weights, the images it trained on (Ultralytics'
    mosaics, one per image of a batch) and the seconds it took."""
    path = Path(folder) / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} holds no {RUN_FILE}: not a folder of the YOLO peer's training "
                                "(`detr benchmark budget --yolo-minutes M` trains one)")
    run = json.loads(path.read_text())
    missing = [key for key in ("weights", "images", "seconds", "image_size") if key not in run]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}")
    return run


def predict_yolo(model: Any, config: CrowdBenchmarkConfig, val: Split, categories: Categories, image_size: int,
                 device: torch.device) -> list[dict[str, Any]]:
    """COCO result records for every val image: detections down to `config.yolo_score_floor`,
    at most 100 an image (what COCO evaluation expects), after Ultralytics' own NMS."""
    val = validated_split(val, categories, "the training split's")
    image_ids = list(val.records.images)
    paths = [str(val.images / val.records.images[i]["file_name"]) for i in image_ids]
    threads = torch.get_num_threads()
    records: list[dict[str, Any]] = []
    try:
        results = model.predict(source=paths, imgsz=yolo_image_size(image_size), conf=config.yolo_score_floor,
                                max_det=100, device=_device_arg(device), stream=True, verbose=False, save=False)
        for image_id, path, result in zip(image_ids, paths, results):
            if Path(result.path).name != Path(path).name:
                raise RuntimeError(f"Ultralytics returned {result.path} where {path} was expected")
            boxes = result.boxes
            records += yolo_records(image_id, boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(),
                                    categories.ids)
    finally:
        torch.set_num_threads(threads)
    return records


class YoloLatency:
    """The YOLO peer as a caller runs it, for the latency benchmark: `torch(images)` is
    Ultralytics' predict on its PyTorch weights, `onnx(images)` the same on its own ONNX export
    (dynamic batch, run by onnxruntime), both at `size`, detections at `threshold` or above.
    `source`: trained weights (.pt), or a yaml for an untrained model of `categories`' count."""

    def __init__(self, source: str, categories: Categories, image_size: int, folder: Path,
                 threshold: float) -> None:
        from torch.utils.flop_counter import FlopCounterMode

        ultralytics = _ultralytics(folder / "settings")
        self.size = yolo_image_size(image_size)
        self.threshold = threshold
        (folder / "yolo").mkdir(parents=True, exist_ok=True)
        if str(source).endswith((".yaml", ".yml")):
            source = _yaml_with_classes(source, len(categories.ids), folder / "yolo")
        model = ultralytics.YOLO(source)
        network = model.model.eval()
        # Ultralytics writes its export beside `pt_path` (a yaml's in the working directory): keep it in `folder`.
        network.pt_path = str(folder / "yolo" / f"{Path(source).stem}.pt")
        self.parameters = sum(p.numel() for p in network.parameters()) / 1e6
        counter = FlopCounterMode(display=False)
        with counter, torch.inference_mode():
            network(torch.zeros(1, 3, self.size, self.size))
        self.gflops = counter.get_total_flops() / 1e9
        threads = torch.get_num_threads()
        try:
            onnx_path = model.export(format="onnx", imgsz=self.size, dynamic=True, simplify=False, verbose=False)
        finally:
            torch.set_num_threads(threads)
        self._torch_model = model
        self._onnx_model = ultralytics.YOLO(onnx_path, task="detect")

    def _predict(self, model: Any, images: list[torch.Tensor]) -> list:
        # Ultralytics takes decoded images as BGR height x width x 3 arrays.
        arrays = [image.flip(0).permute(1, 2, 0).contiguous().numpy() for image in images]
        threads = torch.get_num_threads()
        try:
            return model.predict(source=arrays, imgsz=self.size, conf=self.threshold, device="cpu",
                                 verbose=False, save=False)
        finally:
            torch.set_num_threads(threads)

    @property
    def model(self) -> Any:
        """Ultralytics' model on the PyTorch weights (for `predict_yolo`)."""
        return self._torch_model

    def torch(self, images: list[torch.Tensor]) -> list:
        return self._predict(self._torch_model, images)

    def onnx(self, images: list[torch.Tensor]) -> list:
        return self._predict(self._onnx_model, images)


def _yaml_with_classes(source: str, classes: int, folder: Path) -> str:
    """Ultralytics' model yaml (a file, or a name it knows) with `classes` classes, written under
    the same name (its scale letter is read from the name)."""
    import yaml
    from ultralytics.nn.tasks import yaml_model_load

    layout = yaml_model_load(source)
    layout["nc"] = classes
    path = folder / Path(source).name
    path.write_text(yaml.safe_dump(layout, sort_keys=False))
    return str(path)
