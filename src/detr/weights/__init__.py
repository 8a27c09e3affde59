"""Reading and writing weights in this project's, the official and the Hugging Face layouts."""

from detr.weights.base import LoadedWeights, WeightsError
from detr.weights.formats import LAYOUTS, convert, load_weights, write_weights

__all__ = ["LAYOUTS", "LoadedWeights", "WeightsError", "convert", "load_weights", "write_weights"]
