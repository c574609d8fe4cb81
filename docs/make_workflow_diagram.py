"""Draw a Scipion workflow file as a mermaid flowchart for docs/scipion.md.

The diagram is made from the workflow JSON the plugin's suite runs
(``scipion_plugin/workflows/cryovis_segment_membranes_pick_export.json``, Scipion's
``Project.exportProtocols`` format): one box per protocol, labelled as Scipion shows it, and
one arrow per input pointer (``"ID.outputName"``), labelled output -> input. GitHub renders
mermaid blocks; tests/test_docs_examples.py checks that the block in docs/scipion.md is what
this script makes from the current file.

Run: .venv/bin/python docs/make_workflow_diagram.py [--workflow JSON] [--write docs/scipion.md]
(without --write the block is printed).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / "scipion_plugin" / "workflows" / "cryovis_segment_membranes_pick_export.json"
PAGE = REPO / "docs" / "scipion.md"
BEGIN = "<!-- workflow diagram: made by docs/make_workflow_diagram.py, do not edit -->"
END = "<!-- end of the workflow diagram -->"
POINTER = re.compile(r"^(\d+)\.(\w+)$")


def mermaid(workflow: Path) -> str:
    """The fenced mermaid block of ``workflow``: protocols as boxes, pointers as arrows."""
    protocols = json.loads(workflow.read_text(encoding="utf-8"))
    ids = {str(p["object.id"]) for p in protocols}
    lines = ["```mermaid", "flowchart LR"]
    for p in protocols:
        lines.append(f'  p{p["object.id"]}["{p["object.label"]}"]')
    for p in protocols:
        for name, value in p.items():
            match = POINTER.match(value) if isinstance(value, str) else None
            if match and match.group(1) in ids:
                lines.append(f'  p{match.group(1)} -->|"{match.group(2)} → {name}"| '
                             f'p{p["object.id"]}')
    lines.append("```")
    return "\n".join(lines)


def generated_block(page_text: str) -> str:
    """The diagram block between the markers of a page (ValueError without them)."""
    start, stop = page_text.find(BEGIN), page_text.find(END)
    if start < 0 or stop < start:
        raise ValueError("the page has no generated workflow diagram markers")
    return page_text[start + len(BEGIN):stop].strip()


def main() -> None:
    """Print the diagram, or replace the block between the markers of ``--write PAGE``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflow", type=Path, default=WORKFLOW)
    parser.add_argument("--write", type=Path, default=None, metavar="PAGE")
    args = parser.parse_args()
    block = mermaid(args.workflow)
    if args.write is None:
        print(block)
        return
    text = args.write.read_text(encoding="utf-8")
    old = generated_block(text)
    args.write.write_text(text.replace(old, block, 1), encoding="utf-8")


if __name__ == "__main__":
    main()
