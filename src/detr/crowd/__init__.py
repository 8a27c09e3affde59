"""Crowded scenes: how much objects of one class overlap, and what NMS would remove."""
