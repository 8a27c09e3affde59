"""One forward pass on one image, keeping what the figures need: scores, boxes, attention.

The model sees the predictor's resized image; its feature map has h*w tokens
at `stride` pixels of that resized image, the last row and column possibly
reaching past its edge. `Capture.to_image` maps token values back onto the
original image, and `token_at` maps original pixels to tokens. A model with
the fine level (model.fine_level) shows its decoder attention on that coarse
grid too (`fold_fine_level`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import box_convert

from detr.data.collate import pad_images
from detr.inference import ImageInput, Predictor, to_uint8_image
from detr.model.transformer import AttentionMaps


@dataclass
class Capture:
    """A model's view of one image. Query-indexed arrays follow the model's query order."""

    image: np.ndarray  # original uint8 [H, W, 3]
    input_size: tuple[int, int]  # (height, width) of the resized model input
    feature_shape: tuple[int, int]  # (h, w) tokens
    stride: int  # input pixels per token
    logits: torch.Tensor  # [N, K+1]
    boxes: torch.Tensor  # [N, 4] normalised cxcywh
    attention: AttentionMaps  # per layer [heads, Lq, Lk], batch dimension dropped
    scores: np.ndarray  # [N] best real-class probability
    labels: np.ndarray  # [N] contiguous labels
    boxes_xyxy: np.ndarray  # [N, 4] pixels of the original image
    class_names: tuple[str, ...]
    threshold: float

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]

    @property
    def detected(self) -> np.ndarray:
        """Queries scoring at least the threshold, best first."""
        order = np.argsort(-self.scores, kind="stable")
        return order[self.scores[order] >= self.threshold]

    def losing(self, count: int) -> np.ndarray:
        """The `count` lowest-scoring queries, lowest first."""
        return np.argsort(self.scores, kind="stable")[:count]

    def top(self, count: int) -> np.ndarray:
        return np.argsort(-self.scores, kind="stable")[:count]

    def caption(self, query: int) -> str:
        return f"q{query} {self.class_names[self.labels[query]]} {self.scores[query]:.2f}"

    def to_image(self, token_values: torch.Tensor | np.ndarray,
                 size: tuple[int, int] | None = None) -> np.ndarray:
        """[..., h*w] token values -> [..., H, W] over the original image (or `size`).

        The token grid spans h*stride x w*stride input pixels; it is resized
        (bilinear) so that the input's extent lands on `size`, then cropped.
        """
        values = torch.as_tensor(token_values, dtype=torch.float32)
        h, w = self.feature_shape
        out_h, out_w = size or self.size
        grid = (round(h * self.stride * out_h / self.input_size[0]),
                round(w * self.stride * out_w / self.input_size[1]))
        maps = values.reshape(-1, 1, h, w)
        maps = F.interpolate(maps, size=grid, mode="bilinear", align_corners=False)
        return maps[..., :out_h, :out_w].reshape(*values.shape[:-1], out_h, out_w).numpy()

    def token_at(self, x: float, y: float) -> int:
        """The token whose cell holds original pixel (x, y)."""
        height, width = self.size
        h, w = self.feature_shape
        col = int(np.clip(x * self.input_size[1] / width // self.stride, 0, w - 1))
        row = int(np.clip(y * self.input_size[0] / height // self.stride, 0, h - 1))
        return row * w + col

    def token_centres(self) -> np.ndarray:
        """[h*w, 2] (x, y) centre of each token's cell in original pixels, clipped to the image."""
        height, width = self.size
        h, w = self.feature_shape
        rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        x = (cols.ravel() + 0.5) * self.stride * width / self.input_size[1]
        y = (rows.ravel() + 0.5) * self.stride * height / self.input_size[0]
        return np.stack([np.minimum(x, width - 1), np.minimum(y, height - 1)], axis=1)


def fold_fine_level(weights: torch.Tensor, fine_shape: tuple[int, int],
                    coarse_shape: tuple[int, int]) -> torch.Tensor:
    """Decoder cross-attention over [fine tokens; coarse tokens] -> over the coarse grid alone:
    each fine token's weight added to the coarse cell it was upsampled from (the model's
    nearest upsampling), so rows stay distributions and every figure reads one grid."""
    fine_count = fine_shape[0] * fine_shape[1]
    cells = torch.arange(coarse_shape[0] * coarse_shape[1], dtype=torch.float32).reshape(1, 1, *coarse_shape)
    parent = F.interpolate(cells, size=fine_shape, mode="nearest").flatten().long().to(weights.device)
    coarse = weights[..., fine_count:].clone()
    return coarse.index_add_(-1, parent, weights[..., :fine_count])


def _drop_batch(maps: AttentionMaps) -> AttentionMaps:
    def first(layers):
        return [m[0].float().cpu() for m in layers]

    return AttentionMaps(first(maps.encoder), first(maps.decoder_self), first(maps.decoder_cross))


@torch.inference_mode()
def capture(predictor: Predictor, image: ImageInput, threshold: float = 0.5) -> Capture:
    """Run the predictor's model on one image with attention capture on."""
    pixels = to_uint8_image(image)
    prepared = predictor.prepare(pixels)
    batch, mask = pad_images([prepared])
    out = predictor.model(batch.to(predictor.device), mask.to(predictor.device), need_weights=True)
    attention = _drop_batch(out.attention)
    if out.fine_shape is not None:
        attention.decoder_cross = [fold_fine_level(weights, out.fine_shape, out.feature_shape)
                                   for weights in attention.decoder_cross]
    logits, boxes = out.logits[0].float().cpu(), out.boxes[0].float().cpu()
    scores, labels = predictor.scoring.best(logits)
    height, width = pixels.shape[-2:]
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    return Capture(
        image=pixels.permute(1, 2, 0).numpy(),
        input_size=tuple(prepared.shape[-2:]),
        feature_shape=tuple(out.feature_shape),
        stride=predictor.model.stride,
        logits=logits,
        boxes=boxes,
        attention=attention,
        scores=scores.numpy(),
        labels=labels.numpy(),
        boxes_xyxy=(box_convert(boxes, "cxcywh", "xyxy") * scale).numpy(),
        class_names=tuple(predictor.categories.names),
        threshold=threshold,
    )


def check_layer(layer: int, count: int, what: str) -> int:
    """A layer index (negative counts from the end) checked against the model's layer count."""
    if not -count <= layer < count:
        raise ValueError(f"layer {layer} does not exist: the model has {count} {what} layers "
                         f"(use 0..{count - 1} or -1 for the last)")
    return layer % count
