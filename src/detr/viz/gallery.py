"""All the figures for one image (and optionally a dataset) as PNGs plus an index.html."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from detr.inference import ImageInput, Predictor
from detr.loss import HungarianMatcher
from detr.viz.attention import plot_decoder_attention
from detr.viz.capture import capture, check_layer
from detr.viz.detections import plot_detections
from detr.viz.encoder import Point, default_points, plot_encoder_attention
from detr.viz.matching import GroundTruth, match_ground_truth, plot_matching
from detr.viz.positional import plot_positional_encoding, positional_maps
from detr.viz.queries import collect_query_boxes, plot_query_specialisation


@dataclass
class GalleryEntry:
    file: str  # relative to the gallery folder
    title: str
    caption: str


def write_index(out_dir: str | Path, entries: Sequence[GalleryEntry], title: str = "Inside the model",
                subtitle: str = "") -> Path:
    """An index.html showing each entry's image under its title, with its caption."""
    out_dir = Path(out_dir)
    # <figure>/<figcaption> tie each caption to its image (for screen readers and the browser test).
    sections = "\n".join(
        f'<section><h2>{html.escape(e.title)}</h2><figure><a href="{html.escape(e.file)}">'
        f'<img src="{html.escape(e.file)}" alt="{html.escape(e.title)}"></a>'
        f"<figcaption>{html.escape(e.caption)}</figcaption></figure></section>"
        for e in entries
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1400px;margin:auto;padding:1em}}
img{{max-width:100%;border:1px solid #ccc}}section{{margin-bottom:2.5em}}figure{{margin:0}}
figcaption,p{{max-width:80ch;color:#333;margin-top:.5em}}</style>
</head><body><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p>
{sections}
</body></html>
"""
    out_dir.mkdir(parents=True, exist_ok=True)
    index = out_dir / "index.html"
    index.write_text(page)
    return index


def write_gallery(predictor: Predictor, image: ImageInput, out_dir: str | Path, *, layer: int = -1,
                  per_head: bool = False, points: Sequence[tuple[float, float]] | None = None,
                  threshold: float = 0.5, dataset_images: Iterable[ImageInput] | None = None,
                  ground_truth: GroundTruth | None = None, matcher: HungarianMatcher | None = None,
                  losing: int = 3, max_objects: int = 8, progress: bool = False) -> Path:
    """Write every figure for `image` under `out_dir`; returns the index.html.

    The query-specialisation figure needs `dataset_images`, the matching
    figure `ground_truth`; each is left out without them.
    """
    out_dir = Path(out_dir)
    cap = capture(predictor, image, threshold)
    check_layer(layer, len(cap.attention.encoder), "encoder")
    check_layer(layer, len(cap.attention.decoder_cross), "decoder")
    entries = [GalleryEntry(plot_detections(cap, out_dir / "detections.png").name, "Detections",
                            f"Boxes scoring at least {threshold:g}, with class, score and the query that made each.")]

    objects = cap.detected[:max_objects]
    note = ""
    if len(objects) == 0:
        objects = cap.top(3)
        note = f" Nothing scored {threshold:g} or more, so the three best-scoring queries are shown."
    heads = "per head" if per_head else "averaged over heads"
    entries.append(GalleryEntry(
        plot_decoder_attention(cap, objects, out_dir / "decoder_attention.png", layer, per_head,
                               "detected objects:").name,
        "Decoder cross-attention of each detected object",
        f"Where each object's query looks in the image ({heads}); trained models attend to object "
        f"extremities such as edges, heads and feet.{note}"))
    entries.append(GalleryEntry(
        plot_decoder_attention(cap, cap.losing(losing), out_dir / "losing_queries.png", layer, per_head,
                               "lowest-scoring queries:").name,
        "Queries that detected nothing",
        f"The {losing} lowest-scoring queries, their (unused) boxes and where they look ({heads})."))

    chosen = [Point(x, y) for x, y in points] if points else default_points(cap)
    entries.append(GalleryEntry(
        plot_encoder_attention(cap, chosen, out_dir / "encoder_attention.png", layer, per_head).name,
        "Encoder self-attention from chosen points",
        "What the encoder token under each point attends to, upsampled onto the image. On a trained "
        "model, points on an object light up that object's instance."))

    model = predictor.model
    maps = positional_maps(*cap.feature_shape, model.position_encoding, model.config.hidden_dim)
    entries.append(GalleryEntry(
        plot_positional_encoding(maps, out_dir / "positional_encoding.png").name, "Positional encoding",
        f"The {model.config.position_encoding} encoding on this image's {cap.feature_shape[0]}x"
        f"{cap.feature_shape[1]} token grid: half the channels encode the row, half the column."))

    if dataset_images is not None:
        boxes = collect_query_boxes(predictor, dataset_images, progress=progress)
        entries.append(GalleryEntry(
            plot_query_specialisation(boxes, out_dir / "query_specialisation.png").name,
            "What each query specialises in",
            f"Centres of every query's predicted boxes over {len(boxes.scores)} images (x right, y down), "
            "coloured by box size (COCO small/medium/large area, relative to a 640x480 image)."))

    if ground_truth is not None:
        matching = match_ground_truth(cap, ground_truth, matcher)
        entries.append(GalleryEntry(
            plot_matching(cap, matching, out_dir / "matching.png").name, "Hungarian matching",
            "Which query the training loss would pair with each ground-truth object; every other query "
            "is taught 'no object'. Right: the matcher's cost, with the chosen cells marked."))

    size = f"{cap.size[1]}x{cap.size[0]}"
    name = Path(image).name if isinstance(image, (str, Path)) else "image"
    return write_index(out_dir, entries, subtitle=f"{name} ({size}), model input {cap.input_size[1]}x"
                       f"{cap.input_size[0]}, {cap.feature_shape[0]}x{cap.feature_shape[1]} tokens")
