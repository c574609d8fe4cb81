"""How the benchmarks time one fresh process and read its peak memory.

The peak is the child's own high-water mark (``VmHWM`` of ``/proc/self/status``), printed by
the child as it ends: ``getrusage``'s ``ru_maxrss`` survives ``exec`` on Linux, so a child
would report its (possibly larger) parent's peak instead.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from dataclasses import dataclass

# Appended to any code run by run_python: prints the process's peak as its last line.
PRINT_PEAK = ("\nprint('PEAK_KB', [ln.split()[1] for ln in open('/proc/self/status')\n"
              "                  if ln.startswith('VmHWM')][0], file=sys.stderr)\n")
CRYOVIS = ("import sys\n"
           "from cryoet_integration.cli import main\n"
           "code = main(sys.argv[1:])\n"
           "if code:\n"
           "    sys.exit(code)\n")


@dataclass(frozen=True)
class Measured:
    """Wall-clock seconds, peak resident memory (MiB), CPU seconds (user + system: on a
    shared machine it tells what the wall time hides) and stdout of one process."""

    seconds: float
    peak_mib: float
    cpu_seconds: float
    stdout: str


def run_python(code: str, args: list[str]) -> Measured:
    """Run ``python -c CODE ARGS...`` (``import sys`` first in CODE) and measure it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code + PRINT_PEAK, *map(str, args)],
                         capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed: {res.stderr.strip()[-500:]}")
    kb = [ln.split()[1] for ln in res.stderr.splitlines() if ln.startswith("PEAK_KB")]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Measured(seconds, float(kb[-1]) / 1024, cpu, res.stdout)


def run_cryovis(args: list[str]) -> Measured:
    """Run ``cryovis ARGS...`` in a fresh interpreter and measure it."""
    return run_python(CRYOVIS, args)
