"""The ResNet stem's 3x3 stride-2 max pool, computed the way a CPU runs it fast.

PyTorch's CPU max pool over a channels-first map is slow: on the default's stem output
(2 x 24 x 112 x 120) it took 5.4 ms a forward, about as long as the three convolutions of
layer1 together. The same maximum over six strided views, rows then columns, takes 0.7 ms
and is exactly nn.MaxPool2d's (tests/model/test_stem_pool.py). Inference takes it; training
keeps torch's pool, whose backward is the fast part (the views' backward took 18 ms, and a
channels-last copy saved nothing once the stem's convolution was timed with it).
"""

from __future__ import annotations

import torch
from torch import nn


class StemMaxPool(nn.MaxPool2d):
    """nn.MaxPool2d(3, stride=2, padding=1), the same module to state dicts, hooks and
    exporters: a traced (TorchScript or torch.fx) or compiled graph keeps the plain pool,
    which ONNX Runtime and inductor run well themselves."""

    def __init__(self) -> None:
        super().__init__(kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        traced = not isinstance(x, torch.Tensor)  # a symbolic (torch.fx) trace's proxy
        if traced or torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
            return super().forward(x)
        if torch.is_grad_enabled() and x.requires_grad:
            return super().forward(x)
        return strided_max_pool(x)


def strided_max_pool(x: torch.Tensor) -> torch.Tensor:
    """3x3 max pool at stride 2 with padding 1 of x [..., H, W], without autograd: over rows,
    then over columns, each output the maximum of its input's cells 2i - 1, 2i and 2i + 1 that
    exist (the padding, -inf, never wins). In place on a copy of the even cells: padding the
    map first took as long as the rest."""
    return _max_of_three(_max_of_three(x, -2), -1)


def _max_of_three(x: torch.Tensor, dim: int) -> torch.Tensor:
    size = x.shape[dim]
    outputs, odd_count = (size - 1) // 2 + 1, size // 2
    out = _every_other(x, dim, 0).clone(memory_format=torch.contiguous_format)  # cells 0, 2, 4, ...; never x
    if odd_count == 0:
        return out
    odd = _every_other(x, dim, 1)
    after = out.narrow(dim, 0, odd_count)  # cell 2i + 1
    torch.maximum(after, odd, out=after)
    before = out.narrow(dim, 1, outputs - 1)  # cell 2i - 1
    torch.maximum(before, odd.narrow(dim, 0, outputs - 1), out=before)
    return out


def _every_other(x: torch.Tensor, dim: int, start: int) -> torch.Tensor:
    index = [slice(None)] * x.dim()
    index[dim] = slice(start, None, 2)
    return x[tuple(index)]
