"""Run a pytest suite inside one headless ChimeraX session.

    VENV/bin/python -m chimerax.core --nogui --offscreen --exit \
        --script "chimerax_pytest.py TESTS [PYTEST ARGS]"

ChimeraX starts in about 5 s, so a suite shares one session: this script puts the live
``session`` (defined by ChimeraX in a script's namespace) on
``builtins._chimerax_test_session``, where a session-scoped fixture of the suite finds it
(and skips when it is absent), and exits with pytest's status. pytest's cache is off: the
suite folder may be read-only or shared. Not guarded by ``if __name__ == "__main__"``:
ChimeraX runs scripts under another name.
"""

import builtins
import sys

import pytest

builtins._chimerax_test_session = session  # noqa: F821 - ChimeraX defines `session`
raise SystemExit(pytest.main([*sys.argv[1:], "-p", "no:cacheprovider"]))
