"""Configs written by older versions: checkpoints keep their whole config, so older ones name
fields that have since been replaced or removed."""

from __future__ import annotations

from typing import Any

# Fields that variants which lost their benchmarks used to have, with the value that meant "off".
# Checkpoints keep their whole config, so older ones still name them: at that value they are
# dropped on reading; at any other the checkpoint needs the removed variant, which is refused.
REMOVED_FIELDS: dict[str, dict[str, Any]] = {
    "ModelConfig": {"look_forward_twice": False, "denoising_negatives": False, "positive_queries": 0,
                    "dense_head": False, "encoder_attention": "full", "feature_levels": 1,
                    "sigmoid_classes": False},
    "LossConfig": {"proposal_matches": 1},
    "TrainConfig": {"lr_decay": "step"},
}


def translate_older_fields(kind: str, values: dict[str, Any]) -> dict[str, Any]:
    """A copy of `values` (fields of the dataclass named `kind`) with replaced fields in today's
    form: ModelConfig's `anchor_queries` and `query_selection` switches became `queries`, and a
    fine level without mixing convolutions names no kind of them (older versions kept
    `fine_level_mix='separable'` beside `fine_level_convs=0`, the same model)."""
    values = dict(values)
    if kind != "ModelConfig":
        return values
    if values.get("fine_level_convs") == 0:
        values["fine_level_mix"] = "conv"
    if not {"anchor_queries", "query_selection"} & set(values):
        return values
    anchors, selection = values.pop("anchor_queries", False), values.pop("query_selection", False)
    if selection and not anchors:
        raise ValueError("ModelConfig.query_selection=True without anchor_queries=True never built a model")
    values["queries"] = "selected" if selection else "anchors" if anchors else "learned"
    return values
