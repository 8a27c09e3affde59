"""A run with sigmoid classes (model.sigmoid_classes) through the real Trainer and Predictor."""

import torch

from detr.config import preset
from detr.data.sources import find_split
from detr.engine.train import Trainer
from detr.inference import Predictor
from tests.conftest import tiny_model_config


def test_a_sigmoid_class_run_trains_evaluates_and_predicts_with_sigmoid_scores(tiny_data, tmp_path):
    config = preset("fast")
    config.model = tiny_model_config(num_classes=4, num_queries=10, anchor_queries=True, query_selection=True,
                                     selected_content=True, denoising_groups=1, sigmoid_classes=True)
    config.loss.dense_proposals = True
    config.train.batch_size, config.train.num_workers, config.train.epochs = 4, 0, 1
    trainer = Trainer(config, find_split(tiny_data, "train"), find_split(tiny_data, "val"), tmp_path, progress=False)
    metrics = trainer.fit()
    assert trainer.step > 0 and all(torch.isfinite(torch.tensor(v)) for v in metrics.values())

    predictor = Predictor.from_checkpoint(tmp_path / "last.pt", "cpu")
    assert predictor.sigmoid_classes
    image = torch.randint(0, 255, (3, 64, 80), dtype=torch.uint8)
    detections = predictor.predict(image, threshold=0.0)
    prepared = predictor.prepare(image)[None]
    with torch.no_grad():
        logits = predictor.model(prepared, torch.zeros(1, *prepared.shape[-2:], dtype=torch.bool))["pred_logits"][0]
    expected = logits[:, :-1].sigmoid().amax(-1).sort(descending=True).values  # one box per query
    torch.testing.assert_close(detections.scores, expected)
