"""Evaluation: per-image metrics, metric tables per hole-ratio bucket, baselines, image panels.

numpy, scikit-image and OpenCV only, except ``visual`` (which colours DeepFill's attention flow
with models.attention).
"""
