"""Validation of the models against data they never saw: an independent phantom generator
(``phantom_sim``) and the scoring scripts (``cross_simulator``, ``score_membrane_model``,
``score_baselines``). Run each from the repository root as ``python -m validation.NAME``.

Benchmarks (speed and memory against a baseline) live in ``benchmarks/``.
"""
