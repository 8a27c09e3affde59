from detr.model.builders import build_model
from detr.model.detr import DETR

__all__ = ["DETR", "build_model"]
