import pytest

from detr.cli import build_parser
from detr.config import PRESETS, REMOVED_FIELDS, ExperimentConfig, apply_settings, preset
from detr.config.older_versions import translate_older_fields


def test_settings_reach_any_field_with_its_type():
    config = apply_settings(preset("small"), ["model.query_groups=1", "data.train_scales=(96, 112)",
                                              "train.lr=1", "train.lr_drop_fraction=0.8",
                                              "model.backbone.name=resnet34", "train.time_budget_minutes=None"])
    assert config.model.query_groups == 1 and config.data.train_scales == (96, 112)
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)
    assert config.train.lr_drop_fraction == 0.8 and config.model.backbone.name == "resnet34"
    assert config.train.time_budget_minutes is None


@pytest.mark.parametrize("setting, message", [("model.nope=1", "unknown setting 'model.nope'"),
                                              ("nope.lr=1", "unknown setting 'nope.lr'"),
                                              ("model.backbone=1", "is a section"),
                                              ("train.lr", "section.field=value"),
                                              ("model.selected_content=yes", "True or False")])
def test_bad_settings_are_clear_errors(setting, message):
    with pytest.raises(ValueError, match=message):
        apply_settings(preset("small"), [setting])


def test_booleans_are_read_in_either_case():
    config = apply_settings(preset("fast"), ["model.selected_content=false", "model.backbone.pretrained=TRUE"])
    assert config.model.selected_content is False and config.model.backbone.pretrained is True


def test_train_command_takes_settings():
    args = build_parser().parse_args(["train", "--set", "model.query_groups=2", "train.epochs=3"])
    assert args.set == ["model.query_groups=2", "train.epochs=3"]


def test_fast_fine_is_fast_with_the_unmixed_fine_level_one_query_group_the_deformable_decoder_hard_negatives_budget_sizes_a_two_conv_stem_2_processes_of_batch_2_and_twice_the_lr():
    """What the README and the preset's docstring say it is, and nothing else."""
    fine, fast = preset("fast_fine"), preset("fast")
    assert fine.model.fine_level and fine.model.query_groups == 1 and not fast.model.fine_level
    assert fine.model.fine_level_convs == 0 and fast.model.fine_level_convs == 2
    assert fine.model.decoder_attention == "deformable" and fast.model.decoder_attention == "full"
    assert fine.loss.duplicate_weight == 1.0 and fast.loss.duplicate_weight is None
    assert fine.model.backbone.width == 24 and fast.model.backbone.width == 64
    assert fine.model.backbone.blocks == (1, 1, 1, 1) and fast.model.backbone.blocks == ()
    assert fine.model.backbone.stem == "two_convs" and fast.model.backbone.stem == "resnet"
    assert (fine.model.hidden_dim, fine.model.feedforward_dim, fine.model.encoder_layers) == (96, 384, 1)
    assert fine.model.decoder_layers == 2 and fast.model.decoder_layers == 3
    assert fine.train.batch_size == 2 and fast.train.batch_size == 4
    assert fine.train.processes == 2 and fast.train.processes == 1
    assert (fine.train.lr, fine.train.lr_backbone) == (2 * fast.train.lr, 2 * fast.train.lr_backbone)
    fast.model.fine_level, fast.model.query_groups, fast.model.decoder_attention = True, 1, "deformable"
    fast.model.fine_level_convs = 0
    fast.loss.duplicate_weight = 1.0
    fast.model.backbone.width = 24
    fast.model.backbone.blocks = (1, 1, 1, 1)
    fast.model.backbone.stem = "two_convs"
    fast.model.hidden_dim, fast.model.feedforward_dim, fast.model.encoder_layers = 96, 384, 1
    fast.model.decoder_layers = 2
    fast.train.batch_size = 2
    fast.train.processes = 2
    fast.train.lr, fast.train.lr_backbone = 2 * fast.train.lr, 2 * fast.train.lr_backbone
    assert fine.to_dict() == fast.to_dict()


_SECTIONS = {"ModelConfig": "model", "LossConfig": "loss", "TrainConfig": "train"}


@pytest.mark.parametrize("kind, name, off", [(kind, name, off) for kind, fields in REMOVED_FIELDS.items()
                                             for name, off in fields.items()])
def test_a_removed_setting_is_read_from_old_checkpoints_only_when_off(kind, name, off):
    """Checkpoints keep their whole config: an old one names the removed fields, at their off values."""
    values = preset("small").to_dict()
    values[_SECTIONS[kind]][name] = off
    assert ExperimentConfig.from_dict(values).to_dict() == preset("small").to_dict()
    values[_SECTIONS[kind]][name] = "on" if isinstance(off, str) else (not off if isinstance(off, bool) else off + 1)
    with pytest.raises(ValueError, match=f"{kind}.{name}=.* is a removed setting"):
        ExperimentConfig.from_dict(values)
    with pytest.raises(ValueError, match="unknown setting"):
        apply_settings(preset("small"), [f"{_SECTIONS[kind]}.{name}={off!r}"])


def test_every_preset_passes_the_checks_and_dense_proposals_need_query_selection():
    for name in PRESETS:
        preset(name).check()
    config = preset("fast")
    config.model.queries, config.model.selected_content, config.model.distinct_queries = "anchors", False, 0.0
    with pytest.raises(ValueError, match="loss.dense_proposals .* model.queries='selected'"):
        config.check()


@pytest.mark.parametrize("anchors, selection, queries", [(False, False, "learned"), (True, False, "anchors"),
                                                         (True, True, "selected")])
def test_older_checkpoints_query_switches_read_as_the_query_source(anchors, selection, queries):
    values = ExperimentConfig().to_dict()
    del values["model"]["queries"]
    values["model"].update(anchor_queries=anchors, query_selection=selection)
    assert ExperimentConfig.from_dict(values).model.queries == queries


def test_an_older_config_with_selection_but_no_anchors_is_refused():
    with pytest.raises(ValueError, match="query_selection=True without anchor_queries=True"):
        translate_older_fields("ModelConfig", {"anchor_queries": False, "query_selection": True})
    assert translate_older_fields("LossConfig", {"anchor_queries": True}) == {"anchor_queries": True}
