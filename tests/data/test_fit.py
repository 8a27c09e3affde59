from detr.config import preset
from detr.data.coco_records import read_coco
from detr.data.fit import dataset_stats, fit_to_data, fit_with_settings
from tests.data.tiny_coco import write_coco


def _annotations(tmp_path, sizes, boxes_per_image, box=(10, 10, 20, 16)):
    images = [{"id": i, "file_name": f"{i}.png", "width": w, "height": h} for i, (w, h) in enumerate(sizes)]
    annotations = []
    for i, count in enumerate(boxes_per_image):
        annotations += [{"id": len(annotations) + k + 1, "image_id": i, "category_id": 1, "bbox": list(box),
                         "area": box[2] * box[3], "iscrowd": 0} for k in range(count)]
    annotations.append({"id": 999, "image_id": 0, "category_id": 1, "bbox": [0, 0, 50, 50], "area": 2500,
                        "iscrowd": 1})  # crowd boxes are no targets: never counted
    return read_coco(write_coco(tmp_path / "train.json", images, annotations, [{"id": 1, "name": "tree"}]))


def test_stats_read_sizes_and_counts_from_the_json(tmp_path):
    stats = dataset_stats(_annotations(tmp_path, [(256, 200), (300, 240), (160, 320)], [3, 40, 0]))
    assert stats.images == 3 and stats.most_objects == 40 and stats.median_objects == 3
    assert stats.median_short_side == 200 and stats.median_long_side == 300
    assert stats.small_object_side == 16


def test_stats_count_the_boxes_training_sees(tmp_path):
    # 5 boxes with no area are dropped, as training drops them; a box reaching out is clamped.
    stats = dataset_stats(_annotations(tmp_path, [(64, 64), (64, 64)], [5, 3], box=(60, 10, 0, 6)))
    assert stats.most_objects == 0 and stats.median_objects == 0 and stats.small_object_side == 0.0
    stats = dataset_stats(_annotations(tmp_path, [(64, 64)], [2], box=(60, 10, 20, 6)))
    assert stats.most_objects == 2 and stats.small_object_side == 4  # 20 wide, 4 inside the image


def test_many_objects_and_large_images_raise_the_preset(tmp_path):
    config = preset("small")
    stats = dataset_stats(_annotations(tmp_path, [(256, 240), (280, 250), (300, 270)], [5, 40, 7]))
    notes = fit_to_data(config, stats)
    assert config.model.num_queries == 60  # 40 objects x 1.5
    assert config.data.val_scale == 256  # the median short side (250 -> 256), within the preset's 256 cap
    assert config.data.train_scales == (224, 256, 288)  # the preset's 112/128/144, scaled alike
    assert config.data.max_size == 432 and config.data.crop_max == 256  # 256 x 1.7, to a multiple of 16
    assert "60 queries" in notes[0] and "input 256 px" in notes[1]


def test_a_dataset_that_fits_the_preset_trains_exactly_as_the_preset_says(tmp_path):
    config, untouched = preset("small"), preset("small")
    stats = dataset_stats(_annotations(tmp_path, [(128, 128)] * 3, [6, 2, 1]))
    fit_to_data(config, stats)
    assert config == untouched
    fine_tuning = preset("small")
    fit_to_data(fine_tuning, dataset_stats(_annotations(tmp_path, [(64, 64)], [30])), queries=False)
    assert fine_tuning.model.num_queries == untouched.model.num_queries  # never shrinks, keeps --init's count


def test_small_objects_enlarge_the_input_until_they_span_twelve_pixels(tmp_path):
    # 208-px images whose objects are 9 px: 12 px needs 208 x 12 / 9 = 277 px, rounded up to 288.
    config = preset("fast_fine")
    notes = fit_to_data(config, dataset_stats(_annotations(tmp_path, [(208, 208)] * 3, [2, 2, 2], box=(5, 5, 9, 30))))
    assert config.data.val_scale == 288 and config.data.train_scales == (256, 288, 320)
    assert config.data.crop_min == 224 and config.data.crop_max == 288 and config.data.max_size == 496
    assert "input 288 px" in notes[1] and "small objects 9 px, 12 at the input" in notes[1]
    # 4-px objects would need 3x: the input grows by 1.5x at most (208 -> 312, down to 304).
    tiny = preset("fast_fine")
    fit_to_data(tiny, dataset_stats(_annotations(tmp_path, [(208, 208)] * 3, [2, 2, 2], box=(5, 5, 4, 30))))
    assert tiny.data.val_scale == 304
    # Objects that already span 12 px at the preset's input (the paper's 800 px) change nothing.
    paper, untouched = preset("detr_r50"), preset("detr_r50")
    fit_to_data(paper, dataset_stats(_annotations(tmp_path, [(208, 208)] * 3, [2, 2, 2], box=(5, 5, 9, 30))),
                queries=False)
    assert paper == untouched


def test_crowded_data_gets_the_heavier_hard_negative_and_box_weights(tmp_path):
    config, base = preset("fast_fine"), preset("fast_fine").loss
    notes = fit_to_data(config, dataset_stats(_annotations(tmp_path, [(192, 192)] * 3, [9, 10, 30])))
    assert config.loss.duplicate_weight == 3.0 and "hard-negative weight 3, box losses x2" in notes[-1]
    assert (config.loss.weight_bbox, config.loss.weight_giou) == (2 * base.weight_bbox, 2 * base.weight_giou)
    assert "10 objects in the median image" in notes[-1]
    # The matcher's costs and the class weight stay the preset's.
    assert (config.loss.cost_bbox, config.loss.cost_giou, config.loss.weight_ce) == (
        base.cost_bbox, base.cost_giou, base.weight_ce)
    sparse = preset("fast_fine")  # a median of 9 objects: the preset's loss
    fit_to_data(sparse, dataset_stats(_annotations(tmp_path, [(192, 192)] * 3, [9, 9, 30])))
    assert sparse.loss == base
    paper = preset("small")  # a preset without hard negatives keeps the paper's loss in a crowd too
    fit_to_data(paper, dataset_stats(_annotations(tmp_path, [(128, 128)] * 3, [30, 30, 30])))
    assert paper.loss == preset("small").loss



def test_query_selection_keeps_its_queries_within_the_smallest_inputs_tokens(tmp_path):
    # fast asks for 64 queries; its smallest training input (112 px at stride 16) has 7 x 7 tokens.
    config = preset("fast")
    notes = fit_to_data(config, dataset_stats(_annotations(tmp_path, [(128, 128)] * 3, [5, 2, 1])))
    assert config.model.num_queries == 49 and "49 queries (up to 5 objects" in notes[0]
    larger = preset("fast")  # 256-px images: 224-px inputs hold 14 x 14 tokens, so the preset's 64 stay
    fit_to_data(larger, dataset_stats(_annotations(tmp_path, [(256, 256)] * 3, [5, 2, 1])))
    assert larger.model.num_queries == 64
    packed = preset("fast")  # more objects than tokens: 1.5 queries each, and query selection will say why not
    fit_to_data(packed, dataset_stats(_annotations(tmp_path, [(128, 128)], [60])))
    assert packed.model.num_queries == 90
    paper = preset("small")  # learned queries: the preset's 12, raised only for the data's objects
    fit_to_data(paper, dataset_stats(_annotations(tmp_path, [(128, 128)] * 2, [30, 1])))
    assert paper.model.num_queries == 45


def test_settings_win_over_the_fit_and_the_queries_fit_the_inputs_they_leave(tmp_path):
    records = _annotations(tmp_path, [(128, 128)] * 3, [5, 2, 1])
    config = preset("fast")  # 112-px smallest input: 7 x 7 tokens cap its 64 queries at 49
    notes = fit_with_settings(config, records, ["data.train_scales=(224, 256)", "model.hidden_dim=64"])
    assert config.data.train_scales == (224, 256) and config.model.hidden_dim == 64  # over the fit's scales
    assert config.model.num_queries == 64 and notes[0].startswith("64 queries")  # 14 x 14 tokens now hold 64
    named = preset("fast")
    fit_with_settings(named, records, ["model.num_queries=30"])
    assert named.model.num_queries == 30  # a count the user names stays
    given = preset("fast")  # --init: the weights' model keeps its count
    notes = fit_with_settings(given, records, [], queries=False)
    assert given.model.num_queries == 64 and not any("queries" in note for note in notes)
    fitted, plain = preset("fast"), preset("fast")  # without settings: fit_to_data's config
    fit_to_data(fitted, dataset_stats(records))
    fit_with_settings(plain, records, [])
    assert plain == fitted and plain.model.num_queries == 49
