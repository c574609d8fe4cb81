"""Make the pip-installed ChimeraX 0.1.71 wheel (UCSF ChimeraX 1.7.1) start headless.

    VENV/bin/python finish_install.py        (run by setup.sh, after the pip installs)

Three repairs of what the wheel lacks, each done in the site-packages of the interpreter
that runs this script, each safe to repeat:

1. grako 3.99.9 (an undeclared dependency of ChimeraX's command parser) imports
   ``Mapping``, ``Callable`` and ``Iterable`` from ``collections``; Python 3.10 removed
   them there, so they are rewritten to ``collections.abc``.
2. ``chimerax.core.nogui`` and ``chimerax.toolshed_utils.tool`` are missing: the text-only
   stand-ins beside this script are copied in.
3. All ~150 bundles ship inside one distribution, so ChimeraX's toolshed finds none of them
   (no ``open``, ``volume`` or ``save`` command). ``bundle_stubs.json`` holds, per bundle, the
   ``*.dist-info`` metadata of ChimeraX 1.7.1 (classifiers naming the bundle's commands,
   formats and providers); a ``.dist-info`` folder is written for each.
"""

import json
import re
import shutil
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
SITE = Path(sysconfig.get_paths()["purelib"])
STUB_INSTALLER = "cryovis-chimerax-headless\n"

# grako file -> regex rewrites; each pattern only matches the unrepaired text.
GRAKO_FIXES = {
    "containers.py": [(r"^from collections import Callable$",
                       "from collections.abc import Callable")],
    "grammars.py": [(r"^from collections import defaultdict, Mapping$",
                     "from collections import defaultdict\nfrom collections.abc import Mapping")],
    "util.py": [(r"\bcollections\.(Mapping|Iterable)\b", r"collections.abc.\1")],
    "walkers.py": [(r"\bcollections\.(Mapping|Iterable)\b", r"collections.abc.\1")],
}


def fix_grako(site: Path) -> None:
    for name, fixes in GRAKO_FIXES.items():
        path = site / "grako" / name
        text = path.read_text()
        for pattern, replacement in fixes:
            text = re.sub(pattern, replacement, text, flags=re.MULTILINE)
        if "collections.abc" in text and not re.search(r"^import collections\.abc$", text,
                                                       flags=re.MULTILINE):
            # `collections.abc.X` needs the submodule imported, not only `collections`.
            text = re.sub(r"^import collections$", "import collections\nimport collections.abc",
                          text, count=1, flags=re.MULTILINE)
        path.write_text(text)


def copy_stand_ins(site: Path) -> None:
    for source, target in (("nogui.py", "chimerax/core/nogui.py"),
                           ("toolshed_utils_tool.py", "chimerax/toolshed_utils/tool.py")):
        destination = site / target
        if not destination.parent.is_dir():
            sys.exit(f"{destination.parent}: missing; is ChimeraX==0.1.71 installed here?")
        shutil.copyfile(HERE / source, destination)


def write_bundle_stubs(site: Path) -> int:
    stubs = json.loads((HERE / "bundle_stubs.json").read_text())
    for folder, files in stubs.items():
        target = site / folder
        target.mkdir(exist_ok=True)
        for name, text in files.items():
            (target / name).write_text(text)
        (target / "INSTALLER").write_text(STUB_INSTALLER)
    return len(stubs)


def main() -> None:
    fix_grako(SITE)
    copy_stand_ins(SITE)
    count = write_bundle_stubs(SITE)
    print(f"ChimeraX repaired in {SITE}: grako fixed, 2 stand-in modules, {count} bundle stubs")


if __name__ == "__main__":
    main()
