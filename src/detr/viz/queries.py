"""Figure 5: what each object query specialises in, over a whole set of images.

For every query, the centres of the boxes it predicts on all images, coloured
by box size. Trained queries each cover a few regions and sizes (the paper's
figure 7). Sizes are COCO's small / medium / large area thresholds (32² and
96² pixels) taken relative to a typical 640x480 COCO image, so that they apply
to images of any size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from matplotlib.lines import Line2D
from tqdm import tqdm

from detr.data.collate import pad_images
from detr.inference import ImageInput, Predictor, to_uint8_image
from detr.viz.figure import hide_unused, new_figure, save

SIZE_NAMES = ("small", "medium", "large")
SIZE_COLOURS = ("tab:green", "tab:blue", "tab:red")
RELATIVE_AREA_LIMITS = (32**2 / (640 * 480), 96**2 / (640 * 480))


@dataclass
class QueryBoxes:
    """Every query's prediction on every image: [images, queries, ...], boxes normalised to the image."""

    centres: np.ndarray  # [I, N, 2] (x, y) in [0, 1]
    sizes: np.ndarray  # [I, N, 2] (w, h) in [0, 1]
    scores: np.ndarray  # [I, N]

    @property
    def size_classes(self) -> np.ndarray:
        """[I, N] 0 small, 1 medium, 2 large, from the box's area relative to the image."""
        return np.digitize(self.sizes.prod(-1), RELATIVE_AREA_LIMITS)


@torch.inference_mode()
def collect_query_boxes(predictor: Predictor, images: Iterable[ImageInput], batch_size: int = 1,
                        progress: bool = False) -> QueryBoxes:
    """Run the model on `images` and keep every query's box and score.

    With batch_size > 1 images are zero-padded to a common size, which is
    faster on a GPU but lets the backbone see the padding, moving boxes near
    the edges slightly (as in the paper's batched evaluation).
    """
    centres, sizes, scores = [], [], []
    batch: list[torch.Tensor] = []

    def flush() -> None:
        pixels, mask = pad_images(batch)
        out = predictor.model(pixels.to(predictor.device), mask.to(predictor.device))
        boxes = out.boxes.float().cpu()
        centres.append(boxes[..., :2].numpy())
        sizes.append(boxes[..., 2:].numpy())
        scores.append(predictor.scoring.best(out.logits)[0].cpu().numpy())
        batch.clear()

    for image in tqdm(images, desc="queries", disable=not progress):
        batch.append(predictor.prepare(to_uint8_image(image)))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    if not centres:
        raise ValueError("no images to collect query boxes from")
    return QueryBoxes(np.concatenate(centres), np.concatenate(sizes), np.concatenate(scores))


def plot_query_specialisation(boxes: QueryBoxes, path: str | Path, columns: int = 10,
                              min_score: float = 0.0, panel: float = 1.2) -> Path:
    """One small panel per query: its box centres on all images (y down), coloured by size."""
    num_queries = boxes.centres.shape[1]
    rows = -(-num_queries // columns)
    figure, axes = new_figure(rows, min(columns, num_queries), panel)
    classes = boxes.size_classes
    for query, ax in enumerate(axes.ravel()[:num_queries]):
        keep = boxes.scores[:, query] >= min_score
        x, y = boxes.centres[keep, query].T
        colours = np.asarray(SIZE_COLOURS)[classes[keep, query]]
        ax.scatter(x, y, s=4, c=colours, alpha=0.6, linewidths=0)
        ax.set_xlim(0, 1)
        ax.set_ylim(1, 0)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal")
        ax.set_title(f"q{query}", fontsize=6, pad=1)
    hide_unused(axes, num_queries)
    handles = [Line2D([], [], marker="o", linestyle="", color=c, label=n) for c, n in zip(SIZE_COLOURS, SIZE_NAMES)]
    figure.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=7, frameon=False)
    figure.suptitle(f"predicted box centres per query over {len(boxes.scores)} images", fontsize=9)
    return save(figure, path)
