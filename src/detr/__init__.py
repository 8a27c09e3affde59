"""DETR: end-to-end object detection with transformers."""

from detr.config import ExperimentConfig, preset
from detr.inference import Detections, Predictor
from detr.model import DETR, build_model
from detr.predictors import load

__all__ = ["DETR", "Detections", "ExperimentConfig", "Predictor", "build_model", "load", "preset"]
