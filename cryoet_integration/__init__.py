"""cryovis engine: segmentation, picking, rendering, simulation and evaluation of cryo-ET.

Importing this package is cheap: heavy dependencies (torch, scipy, scikit-image) load only
when a capability that needs them is used, so ``cryovis info`` and ``cryovis convert`` run
with the base install.
"""

__version__ = "0.1.0"
