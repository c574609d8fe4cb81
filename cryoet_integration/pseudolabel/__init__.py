"""Soft multi-class segmentation from a few strokes (Nano-Ötzi, sections 4-4.5).

``weak``: strokes -> ilastik features -> random forest -> soft pseudo-labels (priors
corrected by EM); ``forest``: the forest as plain arrays (``.npz``, no pickle); ``features``:
the filter bank; ``priors``: class-prior re-estimation. The strong classifier is the
segmentation engine trained on the pseudo-labels (``cryovis train segmenter --pseudolabels``).
"""
