"""DAdaptAdam as the reference configures it, and its lr schedule (bafenet-reference.md section 1.5).

The schedule is a pure function of the iteration (warm-up, then step decay at epoch milestones), so a checkpoint's
iteration is all the state it has and a resumed run gets exactly the same lr as an uninterrupted one.
"""
from __future__ import annotations

from dataclasses import dataclass

from dadaptation import DAdaptAdam
from torch import nn

from training.config import OptimizerConfig, ScheduleConfig

# mmengine paramwise_cfg norm_decay_mult=0: these layers' weights and biases never decay.
NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm, nn.LayerNorm,
               nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups of the trainable parameters: 'decay' (conv / linear weights, FCOS Scale factors) at
    ``weight_decay``, and 'no_decay' (every parameter of a norm layer, every bias) at 0 (bias_decay_mult=0)."""
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if not parameter.requires_grad or id(parameter) in seen:
                continue
            seen.add(id(parameter))
            (no_decay if isinstance(module, NORM_LAYERS) or name == "bias" else decay).append(parameter)
    return [{"name": "decay", "params": decay, "weight_decay": weight_decay},
            {"name": "no_decay", "params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, config: OptimizerConfig) -> DAdaptAdam:
    """DAdaptAdam(lr, weight_decay, decouple=True); betas (0.9, 0.999), eps 1e-8, no bias correction, unbounded
    growth: the dadaptation defaults the reference keeps. Parameters whose grad stays None (the exchange's scorer)
    are skipped by the optimizer, weight decay included."""
    return DAdaptAdam(parameter_groups(model, config.weight_decay), lr=config.lr, weight_decay=config.weight_decay,
                      decouple=True, d0=config.d0)


@dataclass(frozen=True)
class LrSchedule:
    """lr at iteration i (0-based, counted over the whole run) = base_lr x warm-up factor x gamma^(milestones
    passed). Warm-up: 'constant' keeps warmup_factor for i < warmup_iters (mmengine ConstantLR); 'linear' goes
    from warmup_factor at i = 0 to 1 at i = warmup_iters (LinearLR). A milestone at epoch e takes effect from
    iteration e x iters_per_epoch (MultiStepLR by epoch)."""

    base_lr: float
    warmup_iters: int
    warmup_factor: float
    warmup_mode: str
    milestone_iters: tuple[int, ...]
    gamma: float

    @classmethod
    def from_config(cls, config: ScheduleConfig, base_lr: float, iters_per_epoch: int) -> LrSchedule:
        return cls(base_lr, config.warmup_iters, config.warmup_factor, config.warmup_mode,
                   tuple(m * iters_per_epoch for m in config.milestones), config.gamma)

    def lr(self, iteration: int) -> float:
        warmup = 1.0
        if iteration < self.warmup_iters:
            warmup = self.warmup_factor if self.warmup_mode == "constant" else \
                self.warmup_factor + (1 - self.warmup_factor) * iteration / self.warmup_iters
        decays = sum(iteration >= m for m in self.milestone_iters)
        return self.base_lr * warmup * self.gamma ** decays

    def apply(self, optimizer: DAdaptAdam, iteration: int) -> float:
        """Set every group's lr for ``iteration`` (DAdaptAdam needs one lr in all groups) and return it."""
        lr = self.lr(iteration)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr
