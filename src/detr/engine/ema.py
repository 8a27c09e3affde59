"""An exponential moving average of the model's weights, for evaluation and export."""

from __future__ import annotations

import copy
import math
from typing import NamedTuple

import torch
from torch import nn


# With a time budget, the average spans about this share of the run's steps.
WINDOW_SHARE = 0.1


class _Pairs(NamedTuple):
    source: nn.Module
    weights: list[torch.Tensor]
    shadow_weights: list[torch.Tensor]
    buffers: list[torch.Tensor]
    shadow_buffers: list[torch.Tensor]


class ModelEMA:
    """shadow = d * shadow + (1 - d) * weights after every optimiser step.

    The decay ramps up as d * (1 - exp(-updates / warmup)) (YOLOv5, RT-DETR),
    so that the average forgets the random initialisation within a short
    run. Buffers (BatchNorm statistics) are copied, not averaged.

    With a time budget, `fit_to_budget` shortens both to a share of the steps
    the budget holds: RT-DETR's 0.9999 and 2000 steps are written for runs of
    tens of thousands of steps, and in a run of 600 they average the last two
    or three (the ramp is still at 0.44) instead of the last tenth.
    """

    def __init__(self, model: nn.Module, decay: float, warmup_steps: int) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"train.ema_decay must lie in (0, 1), not {decay}")
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.warmup_steps = decay, max(1, warmup_steps)
        self.updates = 0
        self._paired: _Pairs | None = None

    def fit_to_budget(self, expected_steps: float) -> str:
        """Average over about WINDOW_SHARE of the expected steps (never longer than configured);
        returns a line for the log."""
        window = max(2.0, WINDOW_SHARE * expected_steps)
        self.decay = min(self.decay, 1 - 1 / window)
        self.warmup_steps = max(1, min(self.warmup_steps, round(window)))
        return (f"EMA: decay {self.decay:.4f}, ramp {self.warmup_steps} steps "
                f"(about {window:.0f} of the {expected_steps:.0f} steps expected in the budget)")

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.warmup_steps))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = self.current_decay()
        # One multi-tensor kernel per dtype instead of one small kernel per tensor (hundreds a step).
        pairs = self._pairs(model)
        torch._foreach_lerp_(pairs.shadow_weights, pairs.weights, 1 - decay)
        if pairs.buffers:
            torch._foreach_copy_(pairs.shadow_buffers, pairs.buffers)

    def _pairs(self, model: nn.Module) -> _Pairs:
        """The trained model's tensors beside their averages, listed once per model: walking both
        modules' trees every step cost more than the averaging (0.6 of 1.1 ms a step, the default)."""
        if self._paired is None or self._paired.source is not model:
            weights, buffers = dict(model.named_parameters()), dict(model.named_buffers())
            shadow_weights, shadow_buffers = list(self.model.named_parameters()), list(self.model.named_buffers())
            self._paired = _Pairs(model, [weights[n].detach() for n, _ in shadow_weights], [s for _, s in shadow_weights],
                                  [buffers[n] for n, _ in shadow_buffers], [s for _, s in shadow_buffers])
        return self._paired

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates,
                "decay": self.decay, "warmup_steps": self.warmup_steps}

    def load_state_dict(self, state: dict) -> None:
        """A resume keeps the decay the budget set (checkpoints written before it existed: the
        configured one)."""
        self.model.load_state_dict(state["model"])
        self.updates = state["updates"]
        self.decay = state.get("decay", self.decay)
        self.warmup_steps = state.get("warmup_steps", self.warmup_steps)
