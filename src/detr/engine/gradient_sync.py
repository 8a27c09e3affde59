"""How the training processes agree on a step: gradients averaged, and whether every loss was finite.

On a GPU, DistributedDataParallel, which overlaps NCCL's communication with the backward. On a
CPU, one allreduce of every gradient, flattened, after the backward: DDP's hook on each
parameter, its buckets and, with unused parameters to expect, its walk of the autograd graph
after every forward ran on the same core as the backward, and cost more than the communication
(the default's training step in 2 processes on 2 AMD EPYC vCPUs, the same batches in both:
131 ms under DDP, 114 with this one allreduce, 111 with none).
"""

from __future__ import annotations

import contextlib
import warnings
from typing import ContextManager

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from detr.distributed import rank, world_size


class GradientSync:
    """One process: nothing to agree on. `net` is what the training step calls."""

    def __init__(self, model: nn.Module) -> None:
        self.net: nn.Module = model

    def accumulating(self) -> ContextManager:
        """Around a micro-batch's backward that is not the step's last (gradient accumulation)."""
        return contextlib.nullcontext()

    def finish(self, finite: torch.Tensor, minutes: float) -> tuple[torch.Tensor, torch.Tensor]:
        """After the step's last backward: the gradients as the processes agree on them. Returns
        1.0 when every process's loss was finite (`finite`: this process's, 1.0 or 0.0), and rank
        0's `minutes` (its clock): every process must stop together, or the others hang, and all
        must drop the learning rate at the same step."""
        return finite, torch.tensor(minutes, dtype=torch.float64)


class DataParallelSync(GradientSync):
    """DistributedDataParallel: each backward's gradients averaged in buckets while it runs."""

    def __init__(self, model: nn.Module, device: torch.device, find_unused_parameters: bool) -> None:
        # DDP warns that a depthwise convolution's weight gradient [C, 1, k, k] has other strides
        # than its bucket: only the stride of the size-1 dimension differs, not the memory layout.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        super().__init__(DistributedDataParallel(model, device_ids=None if device.index is None else [device.index],
                                                 find_unused_parameters=find_unused_parameters))

    def accumulating(self) -> ContextManager:
        return self.net.no_sync()

    def finish(self, finite: torch.Tensor, minutes: float) -> tuple[torch.Tensor, torch.Tensor]:
        # One collective for both: the flags summed, and the clock of rank 0 (the others add zero).
        agreed = torch.stack([finite.double(), finite.new_tensor(_rank_0s(minutes), dtype=torch.float64)])
        dist.all_reduce(agreed)
        return (agreed[0] == world_size()).to(finite.dtype), agreed[1]


class FlatAverageSync(GradientSync):
    """One allreduce a step of the gradients, the floating-point buffers, the finite flags and the clock.

    As DistributedDataParallel: the processes start from rank 0's weights and buffers; a gradient
    is the mean over the processes, counting zeros where a process left it unset; a parameter
    without a gradient in every process keeps none (the optimiser skips it). Unlike it, the
    buffers (BatchNorm's running statistics) are averaged over the processes each step, where DDP
    copies rank 0's before each forward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.buffers = [b for b in model.buffers() if b.is_floating_point()]
        self.averaged = [*self.parameters, *self.buffers]  # in the order of the flat tensor
        self.sizes = [t.numel() for t in self.averaged]
        self.total = sum(self.sizes)  # where the flags and the clock start in the flat tensor
        with torch.no_grad():
            for tensor in [*model.parameters(), *model.buffers()]:
                dist.broadcast(tensor, src=0)

    def finish(self, finite: torch.Tensor, minutes: float) -> tuple[torch.Tensor, torch.Tensor]:
        world = world_size()
        grads = [p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel()) for p in self.parameters]
        has_grad = [p.grad is not None for p in self.parameters]
        flat = torch.cat([*grads, *(b.reshape(-1) for b in self.buffers), finite.reshape(1).to(grads[0].dtype),
                          grads[0].new_tensor([_rank_0s(minutes), *map(float, has_grad)])])
        dist.all_reduce(flat)
        flat[:self.total].div_(world)
        means = [part.view_as(t) for part, t in zip(flat[:self.total].split(self.sizes), self.averaged)]
        with torch.no_grad():
            for parameter, had in zip(self.parameters, has_grad):
                if not had:  # in the parameter's memory layout (channels-last convolutions); dropped
                    parameter.grad = torch.empty_like(parameter)  # below when no process had one
            torch._foreach_copy_([*(p.grad for p in self.parameters), *self.buffers], means)
            if not all(has_grad):
                for parameter, used in zip(self.parameters, flat[self.total + 2:].tolist()):
                    if not used:
                        parameter.grad = None
        return (flat[self.total] == world).to(finite.dtype), flat[self.total + 1].double()


def _rank_0s(minutes: float) -> float:
    """This process's share of a sum that equals rank 0's `minutes`."""
    return minutes if rank() == 0 else 0.0


def gradient_sync(model: nn.Module, device: torch.device, find_unused_parameters: bool) -> GradientSync:
    """The way the processes of this run agree on a step (module docstring)."""
    if world_size() == 1:
        return GradientSync(model)
    if device.type == "cpu":
        return FlatAverageSync(model)
    return DataParallelSync(model, device, find_unused_parameters)
