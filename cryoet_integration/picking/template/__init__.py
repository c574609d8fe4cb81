"""Template matching with orientations (``cryovis pick --method template``).

``match.py`` is the entry point (options, template preparation, global or position-wise
search, refinement, picks); ``engine.py`` the FFT cross-correlation; ``so3.py`` rotation
grids and symmetry; ``filters.py`` Fourier weights; ``peaks.py`` peaks and the cut-off.
"""

from .match import (
                    TemplateMatchOptions,
                    TemplateMatchResult,
                    check_options,
                    check_sizes,
                    match_template,
                    prepare_template,
)
from .so3 import angular_distance, parse_symmetry, uniform_grid

__all__ = [
    "TemplateMatchOptions",
    "TemplateMatchResult",
    "angular_distance",
    "check_options",
    "check_sizes",
    "match_template",
    "parse_symmetry",
    "prepare_template",
    "uniform_grid",
]
