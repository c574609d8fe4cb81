"""Run the bundle's test suite inside ONE ChimeraX process (its start-up costs seconds).

    python -m chimerax.core --nogui --offscreen --exit --script "run_in_chimerax.py TESTS -q"

ChimeraX runs this file as a script with ``session`` defined; the suite's conftest.py picks
the live session up from ``builtins``. The exit status is pytest's.
"""

import builtins
import sys

import pytest

builtins._chimerax_test_session = session  # noqa: F821 - ChimeraX defines it for scripts
raise SystemExit(pytest.main(sys.argv[1:] + ["-p", "no:cacheprovider"]))
