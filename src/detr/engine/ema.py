"""An exponential moving average of the model's weights, for evaluation and export."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ModelEMA:
    """shadow = d * shadow + (1 - d) * weights after every optimiser step.

    The decay ramps up as d * (1 - exp(-updates / warmup)) (YOLOv5, RT-DETR),
    so that the average forgets the random initialisation within a short
    run. Buffers (BatchNorm statistics) are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float, warmup_steps: int) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"train.ema_decay must lie in (0, 1), not {decay}")
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.warmup_steps = decay, max(1, warmup_steps)
        self.updates = 0

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.warmup_steps))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = self.current_decay()
        weights = dict(model.named_parameters())
        for name, shadow in self.model.named_parameters():
            shadow.lerp_(weights[name].detach(), 1 - decay)
        buffers = dict(model.named_buffers())
        for name, shadow in self.model.named_buffers():
            shadow.copy_(buffers[name])

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = state["updates"]
