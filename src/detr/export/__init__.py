"""DETR as an ONNX graph: export (`detr export`) and an onnxruntime-backed Predictor."""

from detr.export.graph import InferenceGraph
from detr.export.onnx_file import export_onnx

__all__ = ["InferenceGraph", "export_onnx"]
