"""Where and how the segmentation engine computes: one device and precision decision for
inference and training, and the CPU allocator setting both run with.

* Device: ``cuda`` when a GPU is usable, else ``cpu``; an explicit request for a device this
  machine cannot use is a one-line :class:`CryovisError`.
* Precision: bfloat16 autocast only where the device computes bf16 natively (CPU flags
  ``avx512_bf16`` / ``amx_bf16``, or a bf16-capable GPU). Elsewhere oneDNN emulates bf16 and
  it is slower than float32 (``benchmarks/bench_engine.py``).
* Allocator: every layer of a 3D U-Net allocates tens to hundreds of MB. glibc hands blocks
  that large to ``mmap`` and back to the system when freed, so each new activation is paid
  for again in page faults (an elementwise op on a fresh 67 MB tensor took 4x longer than
  in place here). :func:`keep_freed_memory` makes glibc keep and reuse them.
"""

from __future__ import annotations

import ctypes
import functools
import sys

from ..errors import CryovisError

PRECISIONS = ("auto", "fp32", "bf16")
# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_BYTES = 1 << 30


def default_device() -> str:
    """``"cuda"`` when a GPU is usable, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(requested: str | None = None) -> str:
    """The torch device to compute on: ``requested`` (e.g. ``"cpu"``, ``"cuda"``,
    ``"cuda:1"``) if this machine has it, :func:`default_device` for None or ``"auto"``.

    Raises CryovisError (one line) for an unknown or unavailable device.
    """
    import torch

    if requested in (None, "", "auto"):
        return default_device()
    try:
        dev = torch.device(requested)
    except (RuntimeError, ValueError):
        raise CryovisError(f"--device {requested}: not a torch device (use cpu, cuda or "
                           "cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise CryovisError(f"--device {requested}: this machine has no usable CUDA GPU "
                               f"(torch {torch.__version__}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise CryovisError(f"--device {requested}: only {torch.cuda.device_count()} "
                               "CUDA device(s) here")
    elif dev.type != "cpu":
        try:
            torch.empty(1, device=dev)
        except (RuntimeError, AssertionError) as exc:
            raise CryovisError(f"--device {requested}: not usable here "
                               f"({' '.join(str(exc).split())[:120]})") from None
    return str(dev)


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            return frozenset(next((ln for ln in fh if ln.startswith("flags")), "").split())
    except OSError:
        return frozenset()


def native_bf16(device: str = "cpu") -> bool:
    """True when ``device`` computes bfloat16 natively (CPU flags avx512_bf16/amx_bf16, or a
    GPU that supports it); elsewhere bf16 autocast is emulated and slower than float32."""
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    flags = _cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(precision: str, device: str = "cpu") -> bool:
    """Resolve ``precision`` ("auto", "fp32", "bf16") to whether bf16 autocast is used;
    "auto" picks bf16 only where the hardware has it natively (masks agree with float32 to
    Dice 0.998, benchmarks/bench_segment.py (c))."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    return precision == "bf16" or (precision == "auto" and native_bf16(device))


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc serve blocks up to 1 GiB from its heap and keep freed ones for reuse
    instead of unmapping them (no-op elsewhere). Returns whether the setting took effect.
    The peak memory is unchanged: the process already held those blocks at its peak."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)
                    and libc.mallopt(_M_TRIM_THRESHOLD, 2 * _KEEP_BYTES))
    except (OSError, AttributeError):
        return False
