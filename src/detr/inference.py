"""Running a trained DETR on images: `detr.load(checkpoint).predict(image)`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from detr.config import DataConfig
from detr.data.coco import Categories, as_rgb, load_image
from detr.data.collate import batches_by_size, pad_images
from detr.data.transforms import prepare_val_image, val_transforms
from detr.model import DETR, build_model
from detr.model.batchnorm_folding import folded_copy
from detr.postprocess import PostProcess
from detr.precision import autocast, check_precision
from detr.weights import LoadedWeights, load_weights

ImageInput = str | Path | Image.Image | torch.Tensor | np.ndarray


@dataclass
class Detections:
    """Detections of one image: xyxy pixel boxes [N, 4], scores [N], labels [N] and names."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    category_ids: list[int]

    def to_dict(self) -> dict:
        return {"boxes": [[round(v, 2) for v in b] for b in self.boxes.tolist()],
                "scores": [round(s, 4) for s in self.scores.tolist()],
                "labels": self.labels.tolist(), "names": self.names, "category_ids": self.category_ids}


_TAKES = "predict() takes a path, a PIL image, an HxW or HxWx3 array, or an HxW or 3xHxW tensor"


def to_uint8_image(image: ImageInput) -> torch.Tensor:
    """A path, PIL image, HxW / HxWx(1|3) numpy array or HxW / (1|3)xHxW tensor -> uint8 RGB [3, H, W].

    Integer pixels must lie in 0-255 and float pixels in [0, 1]: other values are
    refused rather than wrapped or clipped into a different picture. A file is turned
    upright by its EXIF orientation, so boxes land where a viewer shows the objects.
    """
    if isinstance(image, (str, Path)):
        image = load_image(Path(image), upright=True)
    if isinstance(image, Image.Image):
        image = np.array(as_rgb(image))
    shape = tuple(getattr(image, "shape", ()))
    if isinstance(image, np.ndarray):
        if image.dtype.kind not in "uif":
            raise ValueError(f"{_TAKES}; got an array of {image.dtype}")
        if image.ndim == 3:
            image = image.transpose(2, 0, 1)  # HWC -> CHW
        kind = np.uint8 if image.dtype == np.uint8 else np.float32 if image.dtype.kind == "f" else np.int64
        image = torch.from_numpy(np.ascontiguousarray(image, kind))  # types torch may lack, widened
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"{_TAKES}; got {type(image).__name__}")
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3 or image.shape[0] not in (1, 3) or 0 in image.shape:
        raise ValueError(f"{_TAKES}; got shape {shape}")
    if image.dtype == torch.bool or image.is_complex():
        raise ValueError(f"{_TAKES}; got a tensor of {image.dtype}")
    if image.is_floating_point():
        if not torch.isfinite(image).all() or image.min() < 0 or image.max() > 1:
            raise ValueError("a float image must hold finite values in [0, 1]: divide 0-255 pixels by 255")
        image = (image.float() * 255).round()
    elif image.dtype != torch.uint8 and (image.min() < 0 or image.max() > 255):
        raise ValueError(f"integer pixels must lie in 0-255, not {int(image.min())}..{int(image.max())}: "
                         "scale 16-bit images to 8 bits, or pass the file's path")
    image = image.to(torch.uint8)
    return image.expand(3, -1, -1) if image.shape[0] == 1 else image


def detection_copy(model: DETR) -> DETR:
    """The copy that detection runs: the BatchNorms folded into the convolutions (the same
    outputs, faster) and the backbone in channels-last layout; `model` is left as it was."""
    detector = folded_copy(model)
    detector.backbone.use_channels_last()
    return detector


class Predictor:
    """A model with its categories and its evaluation-time preprocessing."""

    def __init__(self, model: DETR, categories: Categories, data: DataConfig,
                 device: str | torch.device | None = None, precision: str = "fp32",
                 compile: bool = False) -> None:
        """`precision`: "fp32" (exact) or "bf16" (autocast; boxes move by ~1e-3 of the image).
        `compile`: run the model through torch.compile (pays off on CUDA for many images)."""
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.model.backbone.use_channels_last()
        self.precision = check_precision(precision)  # refused now, not at the first image
        # `model` (attention maps, the caller's own uses) stays as it was; weights loaded into it
        # later do not reach the detection copy: make a new Predictor for them.
        detector = detection_copy(self.model)
        self.forward = torch.compile(detector, dynamic=True) if compile else detector
        self.categories = categories
        self.data = data
        self.transforms = val_transforms(data)  # for datasets read as the predictor reads images
        self.scoring = model.scoring  # `detr eval --class-pairs` swaps it

    @classmethod
    def from_checkpoint(cls, source: str | Path, device: str | torch.device | None = None,
                        **options) -> Predictor:
        """From anything `detr.weights.load_weights` reads: a checkpoint of `detr train`,
        a named model (detr_r50, ...), an official or Hugging Face file or folder, a hub id.
        `options`: precision, compile."""
        return cls.from_weights(load_weights(source), device, **options)

    @classmethod
    def from_weights(cls, weights: LoadedWeights, device: str | torch.device | None = None,
                     **options) -> Predictor:
        model = build_model(weights.config.model)
        model.load_state_dict(weights.state)
        return cls(model, weights.categories, weights.config.data, device, **options)

    def prepare(self, image: torch.Tensor) -> torch.Tensor:
        """A uint8 [3, H, W] image -> the resized, normalised tensor the model takes (unpadded)."""
        return prepare_val_image(image, self.data)

    @torch.inference_mode()
    def predict_batch(self, images: list[ImageInput], threshold: float = 0.5) -> list[Detections]:
        pixels = [to_uint8_image(i) for i in images]
        prepared = [self.prepare(p) for p in pixels]
        sizes = torch.tensor([p.shape[-2:] for p in pixels])
        results: list[dict[str, torch.Tensor]] = [{}] * len(prepared)
        # Images of other shapes run in batches of like shapes: less padding to compute, and each
        # image's detections are its own whatever its batch (model/padding.py).
        for indices in batches_by_size([tuple(p.shape[-2:]) for p in prepared]):
            batch, mask = pad_images([prepared[i] for i in indices])
            for i, result in zip(indices, self._detect(batch, mask, sizes[indices], threshold)):
                results[i] = result
        return [Detections(r["boxes"].cpu(), r["scores"].cpu(), r["labels"].cpu(),
                           [self.categories.names[i] for i in r["labels"].tolist()],
                           [self.categories.ids[i] for i in r["labels"].tolist()]) for r in results]

    def _detect(self, batch: torch.Tensor, mask: torch.Tensor, sizes: torch.Tensor,
                threshold: float) -> list[dict[str, torch.Tensor]]:
        """Prepared, padded images -> each image's detections (what an ONNX predictor replaces)."""
        # A batch without padding (one image, or images of one size) runs unmasked: the same outputs
        # without the mask's products before every convolution and masked normalisations.
        padded = mask.to(self.device) if mask.any() else None
        with autocast(self.device, self.precision):
            outputs = self.forward(batch.to(self.device), padded)
        return PostProcess(threshold=threshold, scoring=self.scoring)(outputs, sizes)

    def predict(self, image: ImageInput, threshold: float = 0.5) -> Detections:
        return self.predict_batch([image], threshold)[0]

