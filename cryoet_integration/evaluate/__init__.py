"""Evaluation: SHREC 2021 picking scores and segmentation scores (Dice, Surface-Dice, ...).

``evaluate_picks`` scores particle picks against a particle-instance map,
``evaluate_segmentation`` scores a mask, soft map or label map against the truth, and
``missing_wedge_cap_mask`` (normal near z) and ``wedge_hidden_mask`` (no tilt of the series
views it edge-on) select the membrane parts the missing wedge hides, to score them separately
(``evaluate_segmentation(..., region=caps)``).
"""

from .picks import evaluate_picks, orientation_errors
from .segmentation import evaluate_segmentation, missing_wedge_cap_mask, wedge_hidden_mask

__all__ = ["evaluate_picks", "evaluate_segmentation", "missing_wedge_cap_mask",
           "orientation_errors", "wedge_hidden_mask"]
