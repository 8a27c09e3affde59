from detr.loss.criterion import SetCriterion
from detr.loss.matcher import HungarianMatcher

__all__ = ["HungarianMatcher", "SetCriterion"]
