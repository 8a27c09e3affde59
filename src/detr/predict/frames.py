"""What `detr predict` reads: image files, folders of images or frames, and videos."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from detr.data.coco import DatasetError
from detr.inference import to_uint8_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
VIDEO_HINT = "reading videos needs PyAV: pip install av (or pip install 'detr[video]')"


@dataclass
class Frame:
    """One picture to run the model on: `name` is the stem of its output files."""

    name: str
    source: Path
    pixels: torch.Tensor  # uint8 [3, H, W]
    index: int | None = None  # the frame's place in its video; None for an image file


def _natural_key(path: Path) -> list:
    """frame_2 before frame_10: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def collect_inputs(paths: list[str | Path]) -> list[Path]:
    """Files as given (images or videos); folders opened to their images in natural order."""
    inputs = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            inputs += sorted((p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
        elif path.is_file():
            inputs.append(path)
        else:
            raise DatasetError(f"no such image, video or folder: {path}")
    if not inputs:
        raise DatasetError(f"no images found in {', '.join(map(str, paths))}")
    return inputs


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def video_frames(path: Path) -> Iterator[torch.Tensor]:
    """The frames of a video, decoded one at a time (a whole video may not fit in memory)."""
    try:
        import av
    except ImportError:
        raise DatasetError(f"cannot read {path}: {VIDEO_HINT}") from None
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                yield torch.from_numpy(np.ascontiguousarray(frame.to_ndarray(format="rgb24"))).permute(2, 0, 1)
    except av.FFmpegError as error:
        raise DatasetError(f"cannot read video {path}: {error}") from None


def frames(inputs: list[Path]) -> Iterator[Frame]:
    """Every image and every video frame of `inputs`, each under a name no other takes."""
    taken: set[str] = set()

    def unique(stem: str) -> str:
        name, copy = stem, 1
        while name in taken:
            copy += 1
            name = f"{stem}-{copy}"
        taken.add(name)
        return name

    for path in inputs:
        if is_video(path):
            for index, pixels in enumerate(video_frames(path)):
                yield Frame(unique(f"{path.stem}_{index:06d}"), path, pixels, index)
        else:
            yield Frame(unique(path.stem), path, to_uint8_image(path))
