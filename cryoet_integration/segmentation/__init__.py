"""Segmentation engine: networks, losses, augmentation, tiled inference and training.

Submodules import torch themselves; importing this package stays cheap.
"""
