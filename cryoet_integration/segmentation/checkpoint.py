"""Segmentation model files: a state dict ``MODEL.pt`` plus a JSON card ``MODEL.json``.

The card holds everything needed to rebuild and use the network (architecture config,
class names, the voxel size in Å it works at, the normalisation) and its provenance
(training data, recipe, steps, CPU-hours, scores). Weights are always read with
``torch.load(..., weights_only=True)``, so a model file can never run code.

Training state for ``--resume`` (optimizer, step, random generators) is a separate file
``MODEL.state.pt`` holding only tensors, numbers and strings.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from formats import atomic_path, check_writable

from ..errors import CryovisError

CARD_FORMAT = "cryovis-segmenter"
CARD_VERSION = 1
DEFAULT_MODEL = "membrane_default"
# Loaded inference models kept by a long-lived process (a batch worker), keyed by the files'
# identity; None (the default) loads afresh on every call.
_LOADED: dict[tuple, tuple] | None = None


def model_paths(path: str | Path) -> tuple[Path, Path]:
    """``(weights.pt, card.json)`` for a model given as ``MODEL``, ``MODEL.pt`` or
    ``MODEL.json``."""
    p = Path(path)
    if p.suffix in (".pt", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".pt"), p.with_name(p.name + ".json")


def state_path(path: str | Path) -> Path:
    """The resumable training-state file that goes with model ``path``."""
    weights, _ = model_paths(path)
    return weights.with_name(weights.stem + ".state.pt")


def default_model_path() -> Path:
    """The shipped default membrane model (``cryoet_integration/models/``)."""
    return Path(str(resources.files("cryoet_integration") / "models" / f"{DEFAULT_MODEL}.pt"))


def save_model(path: str | Path, net, card: dict[str, Any], overwrite: bool = False) -> Path:
    """Write ``net``'s weights and ``card`` (``network`` is filled from ``net.config``)
    atomically; returns the weights path."""
    import torch

    weights, card_path = model_paths(path)
    check_writable(card_path, overwrite)
    card = {"format": CARD_FORMAT, "version": CARD_VERSION, **card,
            "network": dict(net.config)}
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(weights, overwrite) as tmp:
        torch.save(state, tmp)
    with atomic_path(card_path, overwrite) as tmp:
        tmp.write_text(json.dumps(card, indent=2, default=_json_default) + "\n")
    return weights


def _json_default(obj: Any):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (Path, tuple)):
        return str(obj) if isinstance(obj, Path) else list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_card(path: str | Path) -> dict[str, Any]:
    """The JSON card of model ``path``; CryovisError if missing or not a cryovis card."""
    _, card_path = model_paths(path)
    if not card_path.exists():
        raise CryovisError(f"{card_path}: model card not found (a cryovis model is MODEL.pt "
                           "with MODEL.json beside it)")
    try:
        card = json.loads(card_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CryovisError(f"{card_path}: unreadable model card ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise CryovisError(f"{card_path}: not a cryovis segmenter card "
                           f"(format {card.get('format') if isinstance(card, dict) else None!r})")
    for key in ("network", "classes", "voxel_size"):
        if key not in card:
            raise CryovisError(f"{card_path}: model card lacks {key!r}")
    return card


def update_card(path: str | Path, updates: dict[str, Any], section: str | None = "training"
                ) -> None:
    """Merge ``updates`` into ``section`` of model ``path``'s card (None: the top level),
    atomically."""
    _, card_path = model_paths(path)
    card = read_card(path)
    (card if section is None else card.setdefault(section, {})).update(updates)
    with atomic_path(card_path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(card, indent=2, default=_json_default) + "\n")


def keep_models_loaded() -> None:
    """From now on this process keeps the models it loads: a later :func:`load_model` of the
    same unchanged files on the same device returns the same network (for batch workers,
    which run many tomograms with one model; the networks are only used for inference)."""
    global _LOADED
    if _LOADED is None:
        _LOADED = {}


def _file_key(path: Path) -> tuple:
    stat = path.stat()
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size


def load_model(path: str | Path | None = None, device: str = "cpu", build=None):
    """Load a model for inference; ``None`` loads the shipped default membrane model.

    ``build`` makes the network from the card's ``network`` config (default:
    ``networks.build_network``; the subtomogram classifier passes its own). Returns
    ``(net, card)`` with ``net`` in eval mode on ``device``. A weights file that does not
    match the card's architecture raises CryovisError naming the file. After
    :func:`keep_models_loaded` the same network is returned for unchanged files.
    """
    if path is None:
        path = default_model_path()
    weights, card_path = model_paths(path)
    card = read_card(path)
    if not weights.exists():
        raise CryovisError(f"{weights}: model weights not found")
    if _LOADED is None:
        return _load_network(weights, card, device, build), card
    key = (_file_key(weights), _file_key(card_path), device)
    if key not in _LOADED:
        _LOADED[key] = _load_network(weights, card, device, build)
    return _LOADED[key], card


def _load_network(weights: Path, card: dict[str, Any], device: str, build=None):
    import torch

    from .device import keep_freed_memory
    from .networks import build_network

    keep_freed_memory()
    try:
        net = (build or build_network)(card["network"])
    except (ValueError, TypeError) as exc:
        raise CryovisError(f"{weights}: cannot build the network of its card: {exc}") from None
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle/zip errors have many types
        raise CryovisError(f"{weights}: not a loadable weights file ({type(exc).__name__}: "
                           f"{' '.join(str(exc).split())[:200]})") from None
    if not isinstance(state, dict):
        raise CryovisError(f"{weights}: expected a state dict, got {type(state).__name__}")
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:200]
        raise CryovisError(f"{weights}: weights do not match the {card['network'].get('arch')} "
                           f"architecture in its card ({first})") from None
    return net.to(device).eval()


def save_training_state(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically write a resumable training state (tensors, numbers, strings, dicts)."""
    import torch

    with atomic_path(state_path(path), overwrite=True) as tmp:
        torch.save(state, tmp)


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Read the training state saved by :func:`save_training_state` (weights_only)."""
    import torch

    sp = state_path(path)
    if not sp.exists():
        raise CryovisError(f"{sp}: no training state to resume from")
    try:
        return torch.load(sp, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise CryovisError(f"{sp}: unreadable training state ({type(exc).__name__})") from None
