from detr.model.detr import DETR, build_model

__all__ = ["DETR", "build_model"]
