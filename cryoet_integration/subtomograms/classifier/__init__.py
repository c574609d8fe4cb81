"""The DSM-Net-style subtomogram classifier (Liu et al., multi-task 3D CNN: one shared
encoder, a classification head, a particle-mask segmentation head and a density-recovery
head).

* ``network``: the multi-task network, built from the segmentation engine's blocks;
* ``targets``: training targets from particle lists (class; mask and density from the
  per-class subtomogram average, or from the simulator's instance map);
* ``data``: reading tomograms, particle lists and instance maps into training boxes;
* ``training``: the training loop (losses 1:10:1, checkpoints, ``--resume``) and the
  paper's metrics;
* ``prediction``: classification, masks, densities and feature vectors of picks;
* ``recipes``: the recipe of the shipped default model.
"""
