"""Figure 6: the positional encoding added to queries and keys of every attention.

Half the channels encode the row, half the column. Along one axis each
channel pair is a sine and a cosine of one frequency (the 1-D heatmap); on
the 2-D grid a row channel is constant along x and a column channel constant
along y. The dot product of two positions' codes is the sum of a row part and
a column part, which is how attention can find "near in y and in x".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from detr.model.position_encoding import SinePositionEncoding
from detr.viz.figure import new_mosaic, save


@dataclass
class PositionalMaps:
    y: np.ndarray  # [C/2, h, w] the half that varies with the row
    x: np.ndarray  # [C/2, h, w] the half that varies with the column

    @property
    def along_x(self) -> np.ndarray:
        """[w, C/2] the 1-D encoding of columns: position x channel."""
        return self.x[:, 0, :].T

    def similarity(self, row: int, col: int) -> tuple[np.ndarray, np.ndarray]:
        """Dot products of position (row, col) with every position: (row part, column part), each [h, w]."""
        y = np.einsum("c,chw->hw", self.y[:, row, col], self.y)
        x = np.einsum("c,chw->hw", self.x[:, row, col], self.x)
        return y, x


@torch.no_grad()
def positional_maps(height: int, width: int, encoding: nn.Module | None = None,
                    channels: int = 256) -> PositionalMaps:
    """The encoding of an unpadded height x width feature grid, split into its row and column halves.

    `encoding` is a model's position-encoding module (default: the sine one);
    which half is which is read off the values, since the sine encoding puts
    rows first and the learned one columns first.
    """
    encoding = encoding or SinePositionEncoding(channels)
    pos = encoding(torch.zeros(1, channels, height, width), None)[0].float().numpy()
    first, second = pos[: channels // 2], pos[channels // 2:]
    first_varies_along_x = first.std(axis=2).mean() > first.std(axis=1).mean()
    return PositionalMaps(y=second, x=first) if first_varies_along_x else PositionalMaps(y=first, x=second)


def plot_positional_encoding(maps: PositionalMaps, path: str | Path, pairs: tuple[int, int] = (0, 4)) -> Path:
    """Top: the 1-D heatmap. Middle: channels of the row and column halves as images (for the
    sine encoding, channel 2i is a sine and 2i+1 a cosine of frequency i). Bottom: similarity
    to the centre position, row part + column part = the full dot product."""
    figure, axes = new_mosaic([["wave"] * 4, ["y0", "y1", "x0", "x1"], ["ysim", "xsim", "sim", "note"]])
    image = axes["wave"].imshow(maps.along_x, aspect="auto", cmap="RdBu_r", interpolation="nearest")
    axes["wave"].set_xlabel("channel", fontsize=8)
    axes["wave"].set_ylabel("column", fontsize=8)
    axes["wave"].set_title("1-D encoding of the column position (the row half is the same along y)", fontsize=9)
    figure.colorbar(image, ax=axes["wave"], fraction=0.03)

    a, b = (min(2 * p, len(maps.x) - 2) for p in pairs)
    height, width = maps.y.shape[1:]
    row, col = height // 2, width // 2
    y_part, x_part = maps.similarity(row, col)
    panels = {"y0": (maps.y[a], f"row ch {a}"), "y1": (maps.y[a + 1], f"row ch {a + 1}"),
              "x0": (maps.x[a], f"column ch {a}"), "x1": (maps.x[b], f"column ch {b}"),
              "ysim": (y_part, "row part"), "xsim": (x_part, "column part"),
              "sim": (y_part + x_part, "row + column = full")}
    for name, (values, title) in panels.items():
        ax = axes[name]
        ax.imshow(values, cmap="viridis" if name.endswith("sim") else "RdBu_r", interpolation="nearest")
        if name.endswith("sim"):
            ax.plot(col, row, "x", color="white")
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    note = axes["note"]
    note.set_axis_off()
    note.text(0, 0.5, f"bottom row: dot product of\nevery position's code with\nposition (row {row}, col {col})\n"
              f"on the {height}x{width} token grid", fontsize=8, transform=note.transAxes, va="center")
    return save(figure, path)
