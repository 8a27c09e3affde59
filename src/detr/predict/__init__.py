"""Prediction for use elsewhere: images, frame folders and videos in; drawn frames and VOC, YOLO or json out."""
