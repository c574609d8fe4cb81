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

from ..preprocess import NORMALISATIONS
from .checkpoint import (
    load_model,
    load_training_state,
    model_paths,
    save_model,
    save_training_state,
    state_path,
    update_card,
)
from .data import IGNORE, SOFT_TARGETS, BatchStream, ChunkSampler, PatchSampler, TrainVolume
from .device import PRECISIONS, keep_freed_memory, resolve_device, use_bf16

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
    # "auto": bf16 autocast only where the device computes it natively (device.py), the
    # same decision as inference; emulated bf16 is slower than float32.
    "precision": "auto",
    # Batches made ahead by a background thread while the network trains (0: in the loop).
    "prefetch_batches": 2,
    "augment": {},
    "val_crop": [96, 160, 160],
    "seed": 0,
    # K soft maps as targets (data.SOFT_TARGETS): "regression" (2 classes, one raw output
    # channel) or "ce" (argmax, one channel per painted class); None: integer label maps.
    "soft_target": None,
    # Stroke values of the classes (1..K as painted) when every class, background included,
    # is an output channel; None: channel 0 is an implicit background.
    "label_values": None,
    "normalisation": "robust",
    # Overlapping chunks [z, y, x] voxels (data.ChunkSampler): every epoch draws one tile
    # from each chunk of every volume; None samples tiles anywhere (foreground-biased).
    "chunk_size": None,
    "chunk_overlap": [16, 16, 16],
}


def resolve_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """``TRAIN_DEFAULTS`` overridden by ``config`` (unknown keys are an error)."""
    cfg = json.loads(json.dumps(TRAIN_DEFAULTS))
    for key, value in (config or {}).items():
        if key in ("name", "simulation"):
            continue
        if key == "bf16":
            raise ValueError("training option 'bf16' is now 'precision' (auto, fp32, bf16)")
        if key not in cfg:
            raise ValueError(f"unknown training option {key!r}")
        cfg[key] = value
    if cfg["precision"] not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got "
                         f"{cfg['precision']!r}")
    if cfg["normalisation"] not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {', '.join(NORMALISATIONS)}, got "
                         f"{cfg['normalisation']!r}")
    k = len(cfg["classes"])
    if cfg["soft_target"] not in (None, *SOFT_TARGETS):
        raise ValueError(f"soft_target must be one of {', '.join(SOFT_TARGETS)}, got "
                         f"{cfg['soft_target']!r}")
    if cfg["soft_target"] == "regression" and k != 2:
        raise ValueError(f"regression on soft labels needs 2 classes, got {k}")
    if cfg["label_values"] is not None and len(cfg["label_values"]) != k:
        raise ValueError(f"{len(cfg['label_values'])} label values for {k} classes")
    if cfg["soft_target"] == "regression":
        channels = 1
    elif cfg["label_values"] is not None:
        channels = k
    else:
        channels = 1 if k == 1 else k + 1
    cfg["network"] = {**cfg["network"], "out_channels": channels, "in_channels": 1}
    return cfg


def output_kind(cfg: dict[str, Any]) -> str:
    """How the network's output becomes probabilities (``inference.OUTPUTS``): ``regression``
    (raw output clipped to [0, 1]), ``sigmoid`` (one class) or ``softmax``."""
    if cfg["soft_target"] == "regression":
        return "regression"
    return "sigmoid" if cfg["network"]["out_channels"] == 1 else "softmax"


def class_fractions(volumes: list[TrainVolume], cfg: dict[str, Any]) -> list[float]:
    """Class priors of the training targets (ignore excluded), one per class: the mean soft
    label for regression, the fraction of each argmax index for cross-entropy. The network's
    posteriors carry this mix; ``pseudolabel.priors`` moves them to another tomogram's."""
    k = len(cfg["classes"])
    if cfg["soft_target"] == "regression":
        vals = np.concatenate([v.label[v.label != IGNORE].ravel() for v in volumes])
        m = float(vals.mean()) if vals.size else 0.5
        return [round(1 - m, 6), round(m, 6)]
    counts = np.zeros(k)
    for v in volumes:
        counts += np.bincount(v.label[v.label != IGNORE].astype(np.int64), minlength=k)[:k]
    return (counts / max(counts.sum(), 1)).round(6).tolist()


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


def validation_dice(net, crops: list[tuple[np.ndarray, np.ndarray]], bf16: bool,
                    device: str = "cpu", output: str = "auto") -> float:
    """Mean Dice over classes and crops (ignore voxels excluded); predictions by tiled
    inference so the score is what ``cryovis segment`` would get. Labels are channel
    indices: with one probability channel, 1 = the class; with C channels, channels 1..C-1
    are scored (channel 0 is background)."""
    from .inference import predict_probabilities

    scores = []
    net.eval()
    for image, label in crops:
        probs = predict_probabilities(net, image, bf16=bf16, device=device, output=output)
        pred = (probs[0] > 0.5).astype(np.int8) if len(probs) == 1 else np.argmax(probs, 0)
        valid = label != IGNORE
        for k in range(1, max(2, len(probs))):
            t, p = (label == k) & valid, (pred == k) & valid
            denom = int(t.sum()) + int(p.sum())
            if denom:
                scores.append(2.0 * int((t & p).sum()) / denom)
    net.train()
    return float(np.mean(scores)) if scores else float("nan")


def calibrate_logit_bias(net, val: list[TrainVolume], bf16: bool,
                         device: str = "cpu") -> dict[str, float]:
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
        prob = predict_probabilities(net, vol.image, bf16=bf16, device=device)[0]
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


class _Trainer:
    """One training run's network, optimiser, data stream and bookkeeping; its methods are
    the steps of :func:`train_segmenter`."""

    def __init__(self, cfg: dict[str, Any], train: list[TrainVolume], val: list[TrainVolume],
                 out: str | Path, device: str, provenance: dict[str, Any] | None):
        import torch

        from .augment import Augmenter
        from .losses import build_loss
        from .networks import build_network

        self.cfg, self.train, self.val, self.out, self.device = cfg, train, val, out, device
        self.provenance = provenance or {}
        self.weights, _ = model_paths(out)
        self.bf16 = use_bf16(cfg["precision"], device)
        torch.manual_seed(cfg["seed"])
        self.net = build_network(cfg["network"]).to(device)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=cfg["lr"],
                                     weight_decay=cfg["weight_decay"])
        self.rng = np.random.default_rng(cfg["seed"])
        self.augment = Augmenter(cfg["augment"], seed=cfg["seed"] + 1)
        self.loss_fn = build_loss(cfg["loss"], ignore_index=IGNORE)
        self.history: dict[str, list] = {"step": [], "loss": [], "val_step": [],
                                         "val_dice": []}
        self.step, self.best, self.bad_validations, self.cpu_seconds = 0, -1.0, 0, 0.0
        self.crops = [_validation_crop(v, cfg["val_crop"], self.net.size_multiple) for v in val]
        self.n_classes = len(cfg["classes"])
        self.train_priors = class_fractions(train, cfg) if cfg["label_values"] else None
        self.batches: BatchStream | None = None
        self._cpu_mark = time.process_time()

    def init_from(self, path: str | Path) -> None:
        """Start from another model's weights (fine-tuning). The same architecture and voxel
        size are required; a model with another number of output channels (a 2-class model
        for a K-class one) gives everything but its last layer, the 1x1x1 output heads,
        which start fresh (Nano-Ötzi's transfer, section 4.4)."""
        base, base_card = load_model(path)
        if abs(float(base_card["voxel_size"]) / float(self.cfg["voxel_size"]) - 1) > 0.02:
            raise ValueError(f"{path}: works at {base_card['voxel_size']} Å per voxel, this "
                             f"model at {self.cfg['voxel_size']} Å")
        mine = {k: v for k, v in self.net.config.items() if k != "out_channels"}
        theirs = {k: v for k, v in base_card["network"].items() if k != "out_channels"}
        if mine != theirs:
            raise ValueError(f"{path}: its network {base_card['network']} differs from "
                             f"the one being trained {self.net.config}")
        state = base.state_dict()
        replace = base_card["network"]["out_channels"] != self.net.config["out_channels"]
        if replace:
            state = {k: v for k, v in state.items() if not k.startswith("heads.")}
            state.update({k: v for k, v in self.net.state_dict().items()
                          if k.startswith("heads.")})
        self.net.load_state_dict(state)
        self.provenance["transferred_from"] = {
            "model": str(path), "classes": base_card["classes"],
            "output": base_card.get("output", "sigmoid"),
            "output_heads": "replaced" if replace else "kept"}

    def restore(self) -> None:
        """Continue exactly from ``MODEL.state.pt``: weights, optimiser, step, generators."""
        import torch

        st = load_training_state(self.out)
        if json.loads(st["config"])["network"] != self.cfg["network"]:
            raise ValueError(f"{state_path(self.out)}: saved network differs from this run's")
        self.net.load_state_dict(st["model"])
        self.opt.load_state_dict(st["optimizer"])
        _set_rng(self.rng, st["rng"])
        _set_rng(self.augment.rng, st["augment_rng"])
        torch.set_rng_state(st["torch_rng"])
        self.history = json.loads(st["history"])
        self.step, self.best = int(st["step"]), float(st["best"])
        self.bad_validations = int(st["bad_validations"])
        self.cpu_seconds = float(st["cpu_seconds"])

    def start_data(self) -> None:
        """Start making augmented batches ahead of the network (see :class:`BatchStream`)."""
        if self.cfg["chunk_size"]:
            sampler = ChunkSampler(self.train, tuple(self.cfg["patch_size"]),
                                   tuple(self.cfg["chunk_size"]),
                                   tuple(self.cfg["chunk_overlap"]), self.rng,
                                   seed=self.cfg["seed"],
                                   drawn=self.step * self.cfg["batch_size"])
        else:
            sampler = PatchSampler(self.train, tuple(self.cfg["patch_size"]),
                                   self.cfg["foreground_fraction"], self.rng)

        def make_batch():
            pairs = [self.augment(*sampler.sample()) for _ in range(self.cfg["batch_size"])]
            images, labels = zip(*pairs)
            dtype = np.float32 if self.cfg["soft_target"] == "regression" else np.int64
            return np.stack(images)[:, None], np.stack(labels).astype(dtype)

        self.batches = BatchStream(make_batch, lambda: (_rng_json(self.rng),
                                                        _rng_json(self.augment.rng)),
                                   depth=int(self.cfg["prefetch_batches"]))

    def train_step(self) -> float:
        """One optimisation step on the next batch; returns its loss."""
        import torch

        cfg = self.cfg
        for group in self.opt.param_groups:
            group["lr"] = cfg["lr"] * (1 - self.step / cfg["max_steps"]) ** 0.9
        images, labels = self.batches.next()
        x = torch.from_numpy(images).to(self.device)
        y = torch.from_numpy(labels).to(self.device)
        with torch.autocast(device_type=self.device.split(":")[0], dtype=torch.bfloat16,
                            enabled=self.bf16):
            pred = self.net(x)
        loss = self.loss_fn(pred, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        value = float(loss.detach())
        self.history["step"].append(self.step)
        self.history["loss"].append(value)
        return value

    def validate(self) -> bool:
        """Score the validation crops; saves the model when it is the best so far. Returns
        whether training should stop early (``patience`` validations without progress)."""
        score = validation_dice(self.net, self.crops, self.bf16, self.device,
                                output_kind(self.cfg))
        self.history["val_step"].append(self.step)
        self.history["val_dice"].append(score)
        log.info("step %d: validation Dice %.4f (best %.4f)", self.step, score, self.best)
        if score > self.best:
            self.best, self.bad_validations = score, 0
            self.count_cpu()
            save_model(self.out, self.net, self.card("best validation Dice"), overwrite=True)
            return False
        self.bad_validations += 1
        return self.bad_validations >= self.cfg["patience"]

    def count_cpu(self) -> None:
        self.cpu_seconds += time.process_time() - self._cpu_mark
        self._cpu_mark = time.process_time()

    def card(self, kind: str) -> dict[str, Any]:
        cfg = self.cfg
        strokes = {} if cfg["label_values"] is None else {
            "label_values": cfg["label_values"], "train_priors": self.train_priors}
        return {"classes": cfg["classes"], "voxel_size": cfg["voxel_size"],
                "output": output_kind(cfg), "loss": cfg["loss"], **strokes,
                "normalise": cfg["normalisation"],
                "normalisation": ("robust z-score (median, 1.4826 MAD)"
                                  if cfg["normalisation"] == "robust"
                                  else "per-volume min-max to [0, 1]")
                + " at the model voxel size",
                "contrast": "dense matter dark (negative), as reconstructed",
                "checkpoint": kind, "step": self.step, "training": {
                    **self.provenance, "config": cfg, "steps": self.step,
                    "cpu_hours": round(self.cpu_seconds / 3600, 6),
                    "best_val_dice": None if self.best < 0 else round(self.best, 4),
                    "train_volumes": [v.name for v in self.train],
                    "val_volumes": [v.name for v in self.val]}}

    def checkpoint(self) -> None:
        """Write the resumable state, the loss curve and (without validation) the model."""
        import torch

        self.count_cpu()
        rng, augment_rng = (self.batches.state() if self.batches is not None
                            else (_rng_json(self.rng), _rng_json(self.augment.rng)))
        save_training_state(self.out, {
            "model": self.net.state_dict(), "optimizer": self.opt.state_dict(),
            "step": self.step, "best": self.best, "bad_validations": self.bad_validations,
            "cpu_seconds": self.cpu_seconds, "rng": rng, "augment_rng": augment_rng,
            "torch_rng": torch.get_rng_state(), "history": json.dumps(self.history),
            "config": json.dumps(self.cfg)})
        if not self.val:  # without validation the latest weights are the model
            save_model(self.out, self.net, self.card("latest"), overwrite=True)
        plot_history(self.history, self.weights.with_name(self.weights.stem + "_loss.png"))

    def finish(self, reason: str) -> None:
        """Final checkpoint, calibration of a one-class model, training totals in the card."""
        if self.batches is not None:
            self.batches.close()
        self.checkpoint()
        if self.val and not self.weights.exists():  # stopped before the first validation
            save_model(self.out, self.net, self.card("latest"), overwrite=True)
        if self.val and self.n_classes == 1 and self.weights.exists():
            best_net, _ = load_model(self.out, device=self.device)
            calib = calibrate_logit_bias(best_net, self.val, self.bf16, self.device)
            update_card(self.out, {"logit_bias": calib["logit_bias"]}, section=None)
            update_card(self.out, {"calibration": calib})
        # The best model was saved mid-run; its card records the whole training cost.
        update_card(self.out, {
            "total_steps": self.step, "total_cpu_hours": round(self.cpu_seconds / 3600, 6),
            "stop": reason,
            "history": {k: self.history[k] for k in ("val_step", "val_dice")}})


def _check_outputs(out: str | Path, resume: bool, overwrite: bool) -> None:
    weights, _ = model_paths(out)
    if not weights.parent.is_dir():
        raise FileNotFoundError(f"{weights.parent}: output directory does not exist")
    if not resume and not overwrite:
        for p in (weights, state_path(out)):
            if p.exists():
                raise FileExistsError(f"{p}: exists (use --resume to continue or --force)")


def train_segmenter(train: list[TrainVolume], val: list[TrainVolume], out: str | Path,
                    config: dict[str, Any] | None = None, minutes: float | None = None,
                    resume: bool = False, init_from: str | Path | None = None,
                    provenance: dict[str, Any] | None = None, overwrite: bool = False,
                    progress: bool = True, threads: int = 2,
                    session_steps: int | None = None,
                    device: str | None = None) -> dict[str, Any]:
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
        device: torch device; None picks the GPU when there is one (``device.resolve_device``).

    Returns a summary dict (steps, best validation Dice, stop reason, CPU-hours).
    """
    import torch

    cfg = resolve_config(config)
    torch.set_num_threads(threads)
    keep_freed_memory()
    _check_outputs(out, resume, overwrite)
    run = _Trainer(cfg, train, val, out, resolve_device(device), provenance)
    if init_from is not None:
        run.init_from(init_from)
    if resume:
        run.restore()
    run.start_data()
    bar = _Bar(progress, cfg["max_steps"], run.step)
    start = last_ckpt = time.monotonic()
    first, reason = run.step, "max_steps"
    run.net.train()
    while run.step < cfg["max_steps"]:
        if minutes is not None and time.monotonic() - start > minutes * 60:
            reason = "time limit"
            break
        if session_steps is not None and run.step - first >= session_steps:
            reason = "session steps"
            break
        loss = run.train_step()
        bar.update(run.step, loss)
        if run.step % 20 == 0:
            log.info("step %d: loss %.4f (20-step mean), %.2f s/step", run.step,
                     float(np.mean(run.history["loss"][-20:])),
                     (time.monotonic() - start) / (run.step - first))
        if val and run.step % cfg["validate_every"] == 0 and run.validate():
            reason = "early stopping"
            break
        if time.monotonic() - last_ckpt > cfg["checkpoint_minutes"] * 60:
            run.checkpoint()
            last_ckpt = time.monotonic()
    run.finish(reason)
    bar.close()
    log.info("training stopped (%s) at step %d", reason, run.step)
    return {"steps": run.step, "stop": reason,
            "best_val_dice": None if run.best < 0 else run.best,
            "cpu_hours": run.cpu_seconds / 3600, "model": str(run.weights)}


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
