"""Training the multi-task subtomogram classifier (``cryovis train classifier``).

DSM-Net's objective (paper 004): cross-entropy of the class, 10 x cross-entropy of the
per-voxel particle mask and mean squared error of the recovered density (weights 1:10:1,
the paper's best), Adam at 1e-3. Batches draw classes uniformly (then a particle of the
class), so rare classes are learnt as well as frequent ones.

Augmentation of each box, targets moved with it: a random shift of up to ``margin`` voxels
(picks are never exactly centred), quarter turns and a transpose in the xy plane (the tilt
axis lies anywhere in xy), flips of each axis; image only: an extra missing wedge of a
random tilt range, Fourier amplitude walk, blur, noise, contrast and gamma
(``segmentation.augment``). Validation boxes are centred and unaugmented.

Model files follow the segmentation engine (``segmentation.checkpoint``): ``MODEL.pt``
(best validation class accuracy), ``MODEL.json`` (card with a ``classifier`` section),
``MODEL.state.pt`` for ``--resume``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

CLASSIFIER_KIND = "cryovis-classifier"
CLASSIFIER_VERSION = 1
LOSS_WEIGHTS = {"class": 1.0, "mask": 10.0, "density": 1.0}
TRAIN_DEFAULTS: dict[str, Any] = {
    "voxel_size": 15.0, "box": 24, "margin": 3,
    "network": {"widths": [8, 16, 32], "hidden": 64, "norm": "instance"},
    "batch_size": 12, "lr": 1e-3, "max_steps": 3000, "validate_every": 100, "patience": 10,
    "checkpoint_minutes": 3.0, "seed": 0,
    # CPU budget of the whole run (all sessions, all threads, validation included); None: none
    "cpu_minutes": None,
    "augment": {"rot90": {"p": 0.0}, "flip": {"p": 0.0}, "swap": {"p": 0.0},
                "rotate": {"p": 0.0}, "zoom": {"p": 0.0},
                "missing_wedge": {"p": 0.3, "max_tilt": (40.0, 70.0), "rotate": False},
                "fourier_amplitude": {"p": 0.3}, "noise": {"p": 0.5, "sigma": (0.0, 0.8)},
                "blur": {"p": 0.2, "sigma": (0.5, 1.2)}, "gradient": {"p": 0.0},
                "erase": {"p": 0.0}, "median": {"p": 0.0}},
}


@dataclass
class SubtomogramSet:
    """Boxes with targets: ``images``, ``masks``, ``densities`` ``[n, z, y, x]`` of
    ``box + 2 * margin`` voxels (training crops ``box`` from them), ``labels`` (n,) class
    indices, and the names of the tomograms they came from."""

    images: np.ndarray
    masks: np.ndarray
    densities: np.ndarray
    labels: np.ndarray
    sources: list[str]

    @staticmethod
    def concat(parts: list[SubtomogramSet]) -> SubtomogramSet:
        return SubtomogramSet(np.concatenate([p.images for p in parts]),
                              np.concatenate([p.masks for p in parts]),
                              np.concatenate([p.densities for p in parts]),
                              np.concatenate([p.labels for p in parts]),
                              [s for p in parts for s in p.sources])


def resolve_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """``TRAIN_DEFAULTS`` updated by ``config`` (``network`` and ``augment`` merged one
    level deep); unknown keys raise ``ValueError``."""
    cfg = json.loads(json.dumps(TRAIN_DEFAULTS))
    for key, value in (config or {}).items():
        if key not in cfg:
            raise ValueError(f"unknown classifier training option {key!r}: choose from "
                             f"{sorted(cfg)}")
        if key in ("network", "augment"):
            cfg[key].update(value)
        else:
            cfg[key] = value
    return cfg


def augment_box(image: np.ndarray, mask: np.ndarray, density: np.ndarray, box: int,
                rng: np.random.Generator, augmenter) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One augmented training triple of ``box`` voxels cut from boxes of ``box + 2 m``
    (see the module docstring); ``augmenter`` is a ``segmentation.augment.Augmenter``
    whose geometric transforms are off (geometry is applied here to all three)."""
    start = rng.integers(0, image.shape[0] - box + 1, 3)
    sl = tuple(slice(s, s + box) for s in start)
    arrays = [image[sl], mask[sl], density[sl]]
    k = int(rng.integers(0, 4))
    arrays = [np.rot90(a, k, axes=(1, 2)) for a in arrays]
    if rng.random() < 0.5:
        arrays = [np.swapaxes(a, 1, 2) for a in arrays]
    for axis in range(3):
        if rng.random() < 0.5:
            arrays = [np.flip(a, axis) for a in arrays]
    img, _ = augmenter(np.ascontiguousarray(arrays[0]))
    return img, np.ascontiguousarray(arrays[1]), np.ascontiguousarray(arrays[2])


def centre_crop(stack: np.ndarray, box: int) -> np.ndarray:
    """The central ``box^3`` of every box of ``stack`` ``[n, z, y, x]``."""
    m = (stack.shape[1] - box) // 2
    return stack[:, m:m + box, m:m + box, m:m + box]


def multitask_loss(out, labels, masks, densities) -> tuple[Any, dict[str, float]]:
    """DSM-Net's weighted loss (``LOSS_WEIGHTS``) and its three terms."""
    import torch.nn.functional as F

    terms = {"class": F.cross_entropy(out.class_logits, labels),
             "mask": F.cross_entropy(out.mask_logits, masks),
             "density": F.mse_loss(out.density[:, 0], densities)}
    total = sum(LOSS_WEIGHTS[k] * v for k, v in terms.items())
    return total, {k: float(v.detach()) for k, v in terms.items()}


def predict_boxes(net, images: np.ndarray, batch: int = 32, device: str = "cpu"
                  ) -> dict[str, np.ndarray]:
    """Run ``net`` on boxes ``[n, z, y, x]`` (normalised, dense dark): class
    ``probabilities`` (n, K), ``masks`` uint8, ``densities`` float32 ``[n, z, y, x]``,
    ``features`` (n, hidden)."""
    import torch

    net.eval()
    probs, masks, dens, feats = [], [], [], []
    with torch.inference_mode():
        for lo in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(images[lo:lo + batch])[:, None]).to(device)
            out = net(x)
            probs.append(torch.softmax(out.class_logits, 1).cpu().numpy())
            masks.append(out.mask_logits.argmax(1).to(torch.uint8).cpu().numpy())
            dens.append(out.density[:, 0].cpu().numpy())
            feats.append(out.features.cpu().numpy())
    n_classes = int(net.config["n_classes"])
    box = images.shape[1:]
    return {"probabilities": np.concatenate(probs) if probs else np.zeros((0, n_classes)),
            "masks": np.concatenate(masks) if masks else np.zeros((0, *box), np.uint8),
            "densities": np.concatenate(dens) if dens else np.zeros((0, *box), np.float32),
            "features": (np.concatenate(feats) if feats
                         else np.zeros((0, int(net.config["hidden"])), np.float32))}


def score_predictions(pred: dict[str, np.ndarray], labels: np.ndarray, masks: np.ndarray,
                      densities: np.ndarray, n_classes: int) -> dict[str, Any]:
    """The paper's metrics: object accuracy (and its per-class mean, chance 1/K over the
    classes present), per-voxel pixel accuracy and mIoU (mean over background and
    particle of the IoU summed over all boxes) of the masks, and the Pearson correlation of
    recovered and target densities (mean over boxes)."""
    called = pred["probabilities"].argmax(1)
    present = [k for k in range(n_classes) if np.any(labels == k)]
    recall = {k: float(np.mean(called[labels == k] == k)) for k in present}
    pm, tm = pred["masks"].astype(bool), masks.astype(bool)
    ious = []
    for a, b in ((pm, tm), (~pm, ~tm)):
        union = np.logical_or(a, b).sum()
        ious.append(float(np.logical_and(a, b).sum() / union) if union else 1.0)
    cc = []
    for p, t in zip(pred["densities"], densities):
        if p.std() > 0 and t.std() > 0:
            cc.append(float(np.corrcoef(p.ravel(), t.ravel())[0, 1]))
    return {"n": int(len(labels)),
            "object_accuracy": float(np.mean(called == labels)) if len(labels) else None,
            "class_mean_accuracy": float(np.mean(list(recall.values()))) if recall else None,
            "per_class_accuracy": recall,
            "pixel_accuracy": float(np.mean(pm == tm)) if len(labels) else None,
            "mIoU": float(np.mean(ious)), "particle_IoU": ious[0],
            "density_cc": float(np.mean(cc)) if cc else None}


def check_model_outputs(out: str | Path, resume: bool, overwrite: bool) -> None:
    """CryovisError unless ``out``'s model files may be written (or its state resumed)."""
    from ...errors import CryovisError
    from ...segmentation.checkpoint import model_paths, state_path

    weights, card = model_paths(out)
    if resume:
        if not state_path(out).exists():
            raise CryovisError(f"{state_path(out)}: no training state to resume from")
        return
    for p in (weights, card):
        if p.exists() and not overwrite:
            raise CryovisError(f"{p}: exists (use --force to overwrite, or --resume)")


def train_classifier(train: SubtomogramSet, val: SubtomogramSet | None, out: str | Path,
                     classes: list[str], config: dict[str, Any] | None = None,
                     minutes: float | None = None, resume: bool = False,
                     provenance: dict[str, Any] | None = None, overwrite: bool = False,
                     device: str = "cpu") -> dict[str, Any]:
    """Train the multi-task network and write the model; returns a JSON-able summary.

    Args:
        train, val: boxes with targets at ``config["voxel_size"]`` Å, ``box + 2 * margin``
            voxels (``val`` None: the best model is the last one).
        out: model path ``MODEL`` (writes ``MODEL.pt``, ``MODEL.json``, ``MODEL.state.pt``).
        classes: class names of labels 0..K-1.
        minutes: wall-clock limit of this session (state saved; ``resume`` continues).
        resume: continue from ``MODEL.state.pt`` (weights, optimizer, step, random state).
    """
    import torch

    from ...segmentation.augment import Augmenter
    from ...segmentation.checkpoint import (
        load_training_state,
        model_paths,
        save_model,
        save_training_state,
    )
    from .network import build_dsmnet

    check_model_outputs(out, resume, overwrite)
    cfg = resolve_config(config)
    box, batch = int(cfg["box"]), int(cfg["batch_size"])
    net = build_dsmnet({**cfg["network"], "n_classes": len(classes)}).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=float(cfg["lr"]), betas=(0.9, 0.99))
    rng = np.random.default_rng(cfg["seed"])
    augmenter = Augmenter(cfg["augment"], seed=cfg["seed"] + 1)
    torch.manual_seed(cfg["seed"])
    step, best, stale, cpu_s = 0, -1.0, 0, 0.0
    history: dict[str, list] = {"step": [], "loss": [], "val_step": [], "val": []}
    if resume:
        st = load_training_state(out)
        net.load_state_dict(st["net"])
        opt.load_state_dict(st["optimizer"])
        step, best, stale, cpu_s = int(st["step"]), float(st["best"]), int(st["stale"]), \
            float(st["cpu_seconds"])
        history = json.loads(st["history"])
        rng.bit_generator.state = json.loads(st["rng"])
        augmenter.rng.bit_generator.state = json.loads(st["augment_rng"])
        torch.set_rng_state(st["torch_rng"])
        log.info("resumed at step %d (best %.3f)", step, best)
    by_class = [np.flatnonzero(train.labels == k) for k in range(len(classes))]
    by_class = [rows for rows in by_class if rows.size]
    val_images = centre_crop(val.images, box) if val is not None else None
    card = {"classes": list(classes), "voxel_size": float(cfg["voxel_size"]),
            "normalisation": "robust z-score (median, 1.4826 MAD) of all a tomogram's boxes, "
                             "after anti-aliased resampling to the model voxel size",
            "contrast": "dense matter dark (negative), as reconstructed",
            "checkpoint": "best validation class-mean accuracy",
            "training": {**(provenance or {}), "config": cfg},
            "classifier": {"kind": CLASSIFIER_KIND, "version": CLASSIFIER_VERSION,
                           "box": box, "loss_weights": LOSS_WEIGHTS}}

    def checkpoint() -> None:
        save_training_state(out, {
            "net": net.state_dict(), "optimizer": opt.state_dict(), "step": step,
            "best": best, "stale": stale, "cpu_seconds": cpu_s, "history": json.dumps(history),
            "rng": json.dumps(rng.bit_generator.state),
            "augment_rng": json.dumps(augmenter.rng.bit_generator.state),
            "torch_rng": torch.get_rng_state()})

    start, last_ckpt, stop = time.monotonic(), time.monotonic(), "max steps"
    weights, _ = model_paths(out)
    while step < int(cfg["max_steps"]):
        if minutes is not None and time.monotonic() - start > minutes * 60:
            stop = "time limit"
            break
        if cfg["cpu_minutes"] is not None and cpu_s > float(cfg["cpu_minutes"]) * 60:
            stop = "CPU budget"
            break
        c0 = time.process_time()
        net.train()
        rows = [int(rng.choice(by_class[int(rng.integers(len(by_class)))]))
                for _ in range(batch)]
        triples = [augment_box(train.images[i], train.masks[i], train.densities[i], box, rng,
                               augmenter) for i in rows]
        x = torch.from_numpy(np.stack([t[0] for t in triples])[:, None]).to(device)
        m = torch.from_numpy(np.stack([t[1] for t in triples]).astype(np.int64)).to(device)
        d = torch.from_numpy(np.stack([t[2] for t in triples])).to(device)
        y = torch.from_numpy(train.labels[rows].astype(np.int64)).to(device)
        loss, terms = multitask_loss(net(x), y, m, d)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        history["step"].append(step)
        history["loss"].append(round(float(loss.detach()), 5))
        if step % 20 == 0:
            log.info("step %d loss %.4f %s", step, float(loss.detach()),
                     {k: round(v, 4) for k, v in terms.items()})
        if val is not None and step % int(cfg["validate_every"]) == 0:
            scores = score_predictions(predict_boxes(net, val_images, device=device),
                                       val.labels, centre_crop(val.masks, box),
                                       centre_crop(val.densities, box), len(classes))
            history["val_step"].append(step)
            history["val"].append(scores)
            log.info("validation at step %d: class-mean accuracy %.3f, accuracy %.3f, mIoU "
                     "%.3f, density cc %.3f", step, scores["class_mean_accuracy"],
                     scores["object_accuracy"], scores["mIoU"], scores["density_cc"] or 0)
            if scores["class_mean_accuracy"] > best:
                best, stale = scores["class_mean_accuracy"], 0
                card["classifier"]["validation"] = {**scores, "step": step}
                card["step"] = step
                save_model(out, net, card, overwrite=True)
            else:
                stale += 1
                if stale >= int(cfg["patience"]):
                    stop = "early stop"
                    checkpoint()
                    break
        cpu_s += time.process_time() - c0
        if time.monotonic() - last_ckpt > float(cfg["checkpoint_minutes"]) * 60:
            checkpoint()
            last_ckpt = time.monotonic()
    checkpoint()
    if val is None or not weights.exists():
        card["step"] = step
        save_model(out, net, card, overwrite=True)
    from ...segmentation.checkpoint import update_card

    update_card(out, {"steps_run": step, "stop": stop, "cpu_hours": round(cpu_s / 3600, 4)})
    return {"steps": step, "stop": stop, "best_class_mean_accuracy": best,
            "cpu_hours": round(cpu_s / 3600, 4), "model": str(weights)}
