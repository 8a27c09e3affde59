"""The optimiser and the learning-rate schedule (by epochs, or laid out over a time budget)."""

from __future__ import annotations

import torch

from detr.config import TrainConfig

# With a time budget, the warm-up is cut to this share of the steps the budget is
# expected to hold (measured after the first steps), so a short run is not all warm-up.
WARMUP_SHARE_OF_BUDGET = 0.05
STEPS_BEFORE_ESTIMATE = 20


def build_optimizer(model: torch.nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    backbone = [p for n, p in model.named_parameters() if n.startswith("backbone.") and p.requires_grad]
    rest = [p for n, p in model.named_parameters() if not n.startswith("backbone.") and p.requires_grad]
    groups = [{"params": rest, "lr": config.lr}]
    if backbone:
        groups.append({"params": backbone, "lr": config.lr_backbone})
    # The fused kernel: one pass over each group's tensors instead of a dozen elementwise ops
    # each (CPU: about 6x faster a step on the default's 2.5 M parameters, 16.5 against 2.8 ms).
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay, fused=fused)


class LearningRateSchedule:
    """Linear warm-up over `warmup` steps, then x0.1 from `drop_step` on (None: not yet).

    A callable object rather than a closure: LambdaLR's state_dict keeps its
    attributes, so a drop step or warm-up length decided by the clock survives a resume.
    """

    def __init__(self, warmup: int, drop_step: int | None) -> None:
        self.warmup, self.drop_step = warmup, drop_step

    def __call__(self, step: int) -> float:
        ramp = min(1.0, (step + 1) / self.warmup) if self.warmup > 0 else 1.0
        return ramp * (0.1 if self.drop_step is not None and step >= self.drop_step else 1.0)


class Schedule:
    """LambdaLR over a LearningRateSchedule, with the two decisions a time budget makes
    while training: how long the warm-up is, and when the drop comes."""

    def __init__(self, optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int) -> None:
        self.config = config
        # By epochs, the drop is fixed up front; with a budget as well, the clock may bring it
        # forward (whichever comes first); with a budget alone, only the clock decides.
        drop_step = None if config.epochs is None else config.lr_drop_epoch * steps_per_epoch
        self.rule = LearningRateSchedule(config.warmup_steps, drop_step)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.rule)
        # With a budget: how many steps it holds, estimated once after the first steps.
        self.expected_steps: float | None = None

    @property
    def timed(self) -> bool:
        return self.config.time_budget_minutes is not None

    def describe(self, steps_per_epoch: int) -> str:
        """One line for the start of a run: what ends it and where the lr changes."""
        config = self.config
        budget = config.time_budget_minutes
        if budget is not None and config.epochs is not None:
            ends = f"{budget:g} minutes or {config.epochs} epochs, whichever ends first"
        elif budget is not None:
            ends = f"{budget:g} minutes"
        else:
            ends = f"{config.epochs} epochs of {steps_per_epoch} steps"
        warmup = f"warm-up {config.warmup_steps} steps" + (
            f" (at most {WARMUP_SHARE_OF_BUDGET:.0%} of the budget's steps)" if budget is not None else "")
        drops = []
        if config.epochs is not None:
            drops.append(f"at epoch {config.lr_drop_epoch}")
        if budget is not None:
            drops.append(f"at {config.lr_drop_fraction:.0%} of the time")
        return f"schedule: {ends}; {warmup}; lr x0.1 {' or '.join(drops)}, whichever comes first"

    def after_step(self, step: int, minutes: float) -> str | None:
        """Called after optimiser step `step` (1-based) at `minutes` into the run; returns a
        line to log when it changed the schedule. Decisions apply from the next step on."""
        message = None if self.config.time_budget_minutes is None else self._decide(step, minutes)
        self.scheduler.step()
        return message

    def _decide(self, step: int, minutes: float) -> str | None:
        budget = self.config.time_budget_minutes
        if step == STEPS_BEFORE_ESTIMATE:
            self.expected_steps = expected = budget / max(minutes, 1e-9) * step
            if self.rule.warmup > step:
                self.rule.warmup = max(step, min(self.rule.warmup, int(WARMUP_SHARE_OF_BUDGET * expected)))
                return f"warm-up: {self.rule.warmup} steps (about {expected:.0f} steps expected in the budget)"
        drop_now = minutes > self.config.lr_drop_fraction * budget
        if drop_now and (self.rule.drop_step is None or self.rule.drop_step > step):
            self.rule.drop_step = step
            return f"lr x0.1 from step {step} ({minutes:.2f} of {budget:.2f} minutes)"
        return None

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)
