"""Typed configuration: the one place where every default lives.

Every config dataclass is declared in this package, whoever reads it: a training
run's `ExperimentConfig` (schema.py), a command's experiment and the dataset
generators' settings (commands.py); the modules that use them only take them as
arguments. Presets (presets.py) are functions of nothing that return a full
config; the CLI only overrides fields of a preset (overrides.py), it never
restates a default.
"""

from detr.config.commands import (
    CrowdBenchmarkConfig,
    DenseSynthConfig,
    GeneralSynthConfig,
    SynthConfig,
    crowd_quick,
)
from detr.config.older_versions import REMOVED_FIELDS
from detr.config.overrides import apply_settings, build_dataclass, setting_name
from detr.config.presets import DEFAULT_PRESET, PRESETS, preset
from detr.config.schema import (
    BackboneConfig,
    DataConfig,
    ExperimentConfig,
    LossConfig,
    ModelConfig,
    TrainConfig,
)

__all__ = [
    "DEFAULT_PRESET", "PRESETS", "REMOVED_FIELDS", "BackboneConfig", "CrowdBenchmarkConfig", "DataConfig",
    "DenseSynthConfig", "ExperimentConfig", "GeneralSynthConfig", "LossConfig", "ModelConfig", "SynthConfig",
    "TrainConfig", "apply_settings", "build_dataclass", "crowd_quick", "preset", "setting_name",
]
