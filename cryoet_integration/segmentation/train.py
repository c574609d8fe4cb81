"""Training loop for segmentation networks: patches, augmentation, validation, early
stopping, checkpoints that resume exactly, a loss-curve PNG.

Outputs for ``out = MODEL``: ``MODEL.pt`` + ``MODEL.json`` (the best model by validation
Dice, or the latest when there is no validation data), ``MODEL.state.pt`` (everything needed
to resume: weights, optimizer, step, random generators, history) and ``MODEL_loss.png``.
The learning rate follows a polynomial decay over ``max_steps``; ``minutes`` bounds one
session's wall-clock time, after which the state is saved and ``--resume`` continues.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import (
    load_model,
    load_training_state,
    model_paths,
    save_model,
    save_training_state,
    state_path,
    update_card,
)
from .data import IGNORE, PatchSampler, TrainVolume

log = logging.getLogger(__name__)

TRAIN_DEFAULTS: dict[str, Any] = {
    "classes": ["membrane"],
    # 10 Å matches MemBrain v2's working pixel size: a 5 nm bilayer is 5 voxels wide.
    "voxel_size": 10.0,
    "network": {"arch": "unet3d", "base_channels": 16, "depth": 4, "residual": True,
                "norm": "instance", "deep_supervision": True},
    "loss": {"dice": 1.0, "bce": 1.0},
    "patch_size": [64, 64, 64],
    "batch_size": 2,
    "foreground_fraction": 0.5,
    "lr": 1e-3,
    "weight_decay": 1e-5,
    "max_steps": 2000,
    "validate_every": 100,
    "patience": 10,
    "checkpoint_minutes": 3.0,
    "bf16": True,
    "augment": {},
    "val_crop": [96, 160, 160],
    "seed": 0,
}


def resolve_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """``TRAIN_DEFAULTS`` overridden by ``config`` (unknown keys are an error)."""
    cfg = json.loads(json.dumps(TRAIN_DEFAULTS))
    for key, value in (config or {}).items():
        if key in ("name", "simulation"):
            continue
        if key not in cfg:
            raise ValueError(f"unknown training option {key!r}")
        cfg[key] = value
    k = len(cfg["classes"])
    cfg["network"] = {**cfg["network"], "out_channels": 1 if k == 1 else k + 1,
                      "in_channels": 1}
    return cfg


def _validation_crop(vol: TrainVolume, crop: list[int], multiple: tuple[int, ...]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The ``crop``-sized window (rounded to the network's multiples) holding the most
    labelled voxels, searched on a grid of half-window steps: a central crop can miss
    sparse membranes entirely and make the score meaningless."""
    size = [max(m, (min(c, n) // m) * m) for c, n, m in zip(crop, vol.image.shape, multiple)]
    fg = (vol.label > 0).astype(np.float64)
    integral = np.pad(fg.cumsum(0).cumsum(1).cumsum(2), ((1, 0), (1, 0), (1, 0)))
    best, best_start = -1.0, [0, 0, 0]
    grids = [range(0, n - s + 1, max(1, s // 2)) for n, s in zip(fg.shape, size)]
    for z in grids[0]:
        for y in grids[1]:
            for x in grids[2]:
                a, b, c = z + size[0], y + size[1], x + size[2]
                count = (integral[a, b, c] - integral[z, b, c] - integral[a, y, c]
                         - integral[a, b, x] + integral[z, y, c] + integral[z, b, x]
                         + integral[a, y, x] - integral[z, y, x])
                if count > best:
                    best, best_start = count, [z, y, x]
    box = tuple(slice(a, a + s) for a, s in zip(best_start, size))
    return vol.image[box], vol.label[box]


def validation_dice(net, crops: list[tuple[np.ndarray, np.ndarray]], n_classes: int,
                    bf16: bool) -> float:
    """Mean Dice over classes and crops (ignore voxels excluded); predictions by tiled
    inference so the score is what ``cryovis segment`` would get."""
    from .inference import predict_probabilities

    scores = []
    net.eval()
    for image, label in crops:
        probs = predict_probabilities(net, image, bf16=bf16)
        pred = (probs[0] > 0.5).astype(np.int8) if n_classes == 1 else np.argmax(probs, 0)
        valid = label != IGNORE
        for k in range(1, n_classes + 1):
            t, p = (label == k) & valid, (pred == k) & valid
            denom = int(t.sum()) + int(p.sum())
            if denom:
                scores.append(2.0 * int((t & p).sum()) / denom)
    net.train()
    return float(np.mean(scores)) if scores else float("nan")


def calibrate_logit_bias(net, val: list[TrainVolume], bf16: bool) -> dict[str, float]:
    """Decision threshold of a one-class model that maximises Dice on whole validation
    volumes, as a logit bias for the card (``logit_bias``): inference subtracts it so that
    probability 0.5 is that threshold. Thresholds 0.2-0.95 are scanned in steps of 0.025."""
    from .inference import predict_probabilities

    net.eval()
    thresholds = np.arange(0.2, 0.951, 0.025)
    inter = np.zeros(thresholds.size)
    pred = np.zeros(thresholds.size)
    truth = 0
    for vol in val:
        prob = predict_probabilities(net, vol.image, bf16=bf16)[0]
        valid = vol.label != IGNORE
        t = (vol.label == 1) & valid
        truth += int(t.sum())
        for i, thr in enumerate(thresholds):
            m = (prob > thr) & valid
            inter[i] += int((m & t).sum())
            pred[i] += int(m.sum())
    dice = 2 * inter / np.maximum(pred + truth, 1)
    best = int(np.argmax(dice))
    thr = float(thresholds[best])
    return {"logit_bias": round(float(np.log(thr / (1 - thr))), 4), "threshold": thr,
            "val_dice_at_threshold": round(float(dice[best]), 4),
            "val_dice_at_0.5": round(float(dice[np.argmin(np.abs(thresholds - 0.5))]), 4)}


def plot_history(history: dict[str, list], path: Path) -> None:
    """Training loss (smoothed) and validation Dice against step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from formats import atomic_path

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = np.array(history["step"])
    loss = np.array(history["loss"])
    if loss.size:
        k = max(1, min(50, loss.size // 10))
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.plot(steps, loss, color="0.8", lw=0.5, label="loss")
        ax.plot(steps[k - 1:], smooth, color="C0", label=f"loss ({k}-step mean)")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    if history["val_step"]:
        ax2 = ax.twinx()
        ax2.plot(history["val_step"], history["val_dice"], "o-", color="C1", label="val Dice")
        ax2.set_ylabel("validation Dice")
        ax2.set_ylim(0, 1)
        ax2.legend(loc="upper right")
    ax.legend(loc="upper left")
    fig.tight_layout()
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def _rng_json(rng: np.random.Generator) -> str:
    return json.dumps(rng.bit_generator.state)


def _set_rng(rng: np.random.Generator, text: str) -> None:
    rng.bit_generator.state = json.loads(text)


def train_segmenter(train: list[TrainVolume], val: list[TrainVolume], out: str | Path,
                    config: dict[str, Any] | None = None, minutes: float | None = None,
                    resume: bool = False, init_from: str | Path | None = None,
                    provenance: dict[str, Any] | None = None, overwrite: bool = False,
                    progress: bool = True, threads: int = 2,
                    session_steps: int | None = None) -> dict[str, Any]:
    """Train (or resume training) a segmenter on prepared volumes; writes ``out`` files.

    Args:
        train, val: volumes at ``config["voxel_size"]`` Å (see :func:`data.load_pair`).
        out: model path (``MODEL`` or ``MODEL.pt``).
        config: options overriding ``TRAIN_DEFAULTS`` (a recipe dict works as is).
        minutes: wall-clock limit of this session; None runs until ``max_steps`` or early stop.
        session_steps: at most this many steps in this session (like ``minutes``).
        resume: continue from ``MODEL.state.pt`` exactly (weights, optimizer, step, rngs).
        init_from: start from another model's weights (fine-tuning); same architecture.
        provenance: recorded in the card (training data, recipe name, command).

    Returns a summary dict (steps, best validation Dice, stop reason, CPU-hours).
    """
    import torch

    from .augment import Augmenter
    from .losses import build_loss
    from .networks import build_network

    cfg = resolve_config(config)
    torch.set_num_threads(threads)
    weights, _ = model_paths(out)
    if not weights.parent.is_dir():
        raise FileNotFoundError(f"{weights.parent}: output directory does not exist")
    if not resume and not overwrite:
        for p in (weights, state_path(out)):
            if p.exists():
                raise FileExistsError(f"{p}: exists (use --resume to continue or --force)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(cfg["seed"])
    net = build_network(cfg["network"]).to(device)
    if init_from is not None:
        base, base_card = load_model(init_from)
        if base_card["network"] != net.config:
            raise ValueError(f"{init_from}: its network {base_card['network']} differs from "
                             f"the one being trained {net.config}")
        net.load_state_dict(base.state_dict())
    opt = torch.optim.AdamW(net.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    rng = np.random.default_rng(cfg["seed"])
    augment = Augmenter(cfg["augment"], seed=cfg["seed"] + 1)
    history: dict[str, list] = {"step": [], "loss": [], "val_step": [], "val_dice": []}
    step, best, bad_validations, cpu_seconds = 0, -1.0, 0, 0.0
    if resume:
        st = load_training_state(out)
        if json.loads(st["config"])["network"] != cfg["network"]:
            raise ValueError(f"{state_path(out)}: saved network differs from this run's")
        net.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        _set_rng(rng, st["rng"])
        _set_rng(augment.rng, st["augment_rng"])
        torch.set_rng_state(st["torch_rng"])
        history = json.loads(st["history"])
        step, best = int(st["step"]), float(st["best"])
        bad_validations, cpu_seconds = int(st["bad_validations"]), float(st["cpu_seconds"])
    sampler = PatchSampler(train, tuple(cfg["patch_size"]), cfg["foreground_fraction"], rng)
    loss_fn = build_loss(cfg["loss"], ignore_index=IGNORE)
    crops = [_validation_crop(v, cfg["val_crop"], net.size_multiple) for v in val]
    n_classes = len(cfg["classes"])
    bf16 = bool(cfg["bf16"]) and device == "cpu"

    def card(kind: str) -> dict[str, Any]:
        return {"classes": cfg["classes"], "voxel_size": cfg["voxel_size"],
                "normalisation": "robust z-score (median, 1.4826 MAD) at the model voxel size",
                "contrast": "dense matter dark (negative), as reconstructed",
                "checkpoint": kind, "step": step, "training": {
                    **(provenance or {}), "config": cfg, "steps": step,
                    "cpu_hours": round(cpu_seconds / 3600, 6),
                    "best_val_dice": None if best < 0 else round(best, 4),
                    "train_volumes": [v.name for v in train],
                    "val_volumes": [v.name for v in val]}}

    def checkpoint() -> None:
        save_training_state(out, {
            "model": net.state_dict(), "optimizer": opt.state_dict(), "step": step,
            "best": best, "bad_validations": bad_validations, "cpu_seconds": cpu_seconds,
            "rng": _rng_json(rng), "augment_rng": _rng_json(augment.rng),
            "torch_rng": torch.get_rng_state(), "history": json.dumps(history),
            "config": json.dumps(cfg)})
        if not val:  # without validation the latest weights are the model
            save_model(out, net, card("latest"), overwrite=True)
        plot_history(history, weights.with_name(weights.stem + "_loss.png"))

    bar = _Bar(progress, cfg["max_steps"], step)
    start_wall = last_ckpt = time.monotonic()
    first = step
    cpu_mark = time.process_time()
    reason = "max_steps"
    net.train()
    while step < cfg["max_steps"]:
        if minutes is not None and time.monotonic() - start_wall > minutes * 60:
            reason = "time limit"
            break
        if session_steps is not None and step - first >= session_steps:
            reason = "session steps"
            break
        lr = cfg["lr"] * (1 - step / cfg["max_steps"]) ** 0.9
        for group in opt.param_groups:
            group["lr"] = lr
        images, labels = zip(*(augment(*sampler.sample()) for _ in range(cfg["batch_size"])))
        x = torch.from_numpy(np.stack(images)[:, None]).to(device)
        y = torch.from_numpy(np.stack(labels).astype(np.int64)).to(device)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            pred = net(x)
        loss = loss_fn(pred, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        history["step"].append(step)
        value = float(loss.detach())
        history["loss"].append(value)
        bar.update(step, value)
        if step % 20 == 0:
            recent = history["loss"][-20:]
            log.info("step %d: loss %.4f (20-step mean), %.2f s/step", step,
                     float(np.mean(recent)), (time.monotonic() - start_wall) / (step - first))
        if val and step % cfg["validate_every"] == 0:
            score = validation_dice(net, crops, n_classes, bf16)
            history["val_step"].append(step)
            history["val_dice"].append(score)
            log.info("step %d: validation Dice %.4f (best %.4f)", step, score, best)
            if score > best:
                best, bad_validations = score, 0
                cpu_seconds += time.process_time() - cpu_mark
                cpu_mark = time.process_time()
                save_model(out, net, card("best validation Dice"), overwrite=True)
            else:
                bad_validations += 1
                if bad_validations >= cfg["patience"]:
                    reason = "early stopping"
                    break
        if time.monotonic() - last_ckpt > cfg["checkpoint_minutes"] * 60:
            cpu_seconds += time.process_time() - cpu_mark
            cpu_mark = time.process_time()
            checkpoint()
            last_ckpt = time.monotonic()
    cpu_seconds += time.process_time() - cpu_mark
    checkpoint()
    if val and not weights.exists():  # stopped before the first validation
        save_model(out, net, card("latest"), overwrite=True)
    if val and n_classes == 1 and weights.exists():
        best_net, _ = load_model(out)
        calib = calibrate_logit_bias(best_net, val, bf16)
        update_card(out, {"logit_bias": calib["logit_bias"]}, section=None)
        update_card(out, {"calibration": calib})
    # The best model was saved mid-run; its card records the whole training cost.
    update_card(out, {"total_steps": step, "total_cpu_hours": round(cpu_seconds / 3600, 6),
                      "stop": reason, "history": {k: history[k] for k in ("val_step", "val_dice")}})
    bar.close()
    summary = {"steps": step, "stop": reason, "best_val_dice": None if best < 0 else best,
               "cpu_hours": cpu_seconds / 3600, "model": str(weights)}
    log.info("training stopped (%s) at step %d", reason, step)
    return summary


class _Bar:
    """A rich progress bar (or nothing) showing step and loss."""

    def __init__(self, enabled: bool, total: int, done: int):
        self.progress = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("loss {task.fields[loss]:.4f}"),
                                     TimeRemainingColumn())
            self.task = self.progress.add_task("train", total=total, completed=done,
                                               loss=float("nan"))
            self.progress.start()

    def update(self, step: int, loss: float) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step, loss=loss)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
