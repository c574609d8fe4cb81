"""Classifying picks with a trained classifier (``cryovis classify``): class and class
probability per pick, the per-pick particle mask and recovered density, and the feature
vectors (the classification head's hidden layer) with a PCA / t-SNE figure.

Positions are voxels ``x, y, z`` of the tomogram given; boxes ``[z, y, x]`` at the model's
voxel size (its card).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...errors import CryovisError
from .targets import centre_polarity, cut_boxes
from .training import CLASSIFIER_KIND, predict_boxes

DEFAULT_CLASSIFIER = "classifier_default"


def default_classifier_path() -> Path:
    """The shipped default classifier (``cryoet_integration/models/classifier_default.pt``)."""
    return Path(str(resources.files("cryoet_integration") / "models"
                    / f"{DEFAULT_CLASSIFIER}.pt"))


def read_classifier_card(path: str | Path | None = None) -> dict[str, Any]:
    """The card of classifier ``path`` (default: the shipped one); CryovisError naming the
    file when it is missing, unreadable or not a classifier (e.g. a picker)."""
    from ...segmentation.checkpoint import model_paths, read_card

    p = default_classifier_path() if path is None else Path(path)
    card = read_card(p)
    section = card.get("classifier")
    if not isinstance(section, dict) or section.get("kind") != CLASSIFIER_KIND:
        raise CryovisError(f"{model_paths(p)[1]}: a model of {card.get('classes')}, not a "
                           "subtomogram classifier (train one with 'cryovis train classifier')")
    return card


def load_classifier(path: str | Path | None = None, device: str = "cpu"):
    """Load a classifier (default: the shipped one); returns ``(net, card)``, the network
    in eval mode on ``device``. Weights are read with ``weights_only=True``."""
    from ...segmentation.checkpoint import load_model
    from .network import build_dsmnet

    p = default_classifier_path() if path is None else Path(path)
    read_classifier_card(p)
    return load_model(p, device=device, build=build_dsmnet)


@dataclass
class Classification:
    """Per kept pick (``kept`` over the input rows): class names, probabilities (n, K),
    masks / densities ``[n, z, y, x]`` at ``voxel_size`` Å, features (n, hidden)."""

    kept: np.ndarray
    classes: list[str]
    probabilities: np.ndarray
    masks: np.ndarray
    densities: np.ndarray
    features: np.ndarray
    voxel_size: float
    polarity: str
    notes: list[str] = field(default_factory=list)

    @property
    def called(self) -> list[str]:
        """The most probable class of each pick."""
        return [self.classes[k] for k in self.probabilities.argmax(1)]


def classify_picks(data: np.ndarray, voxel_size: float, xyz: np.ndarray, net,
                   card: dict[str, Any], polarity: str = "auto", device: str = "cpu"
                   ) -> Classification:
    """Classify the picks ``xyz`` (N, 3; voxels ``x, y, z``) of tomogram ``data``
    (``[z, y, x]``, ``voxel_size`` Å/voxel, may be memory-mapped).

    ``polarity``: "dark" (dense matter dark, as reconstructed), "light" (inverted) or
    "auto" (from the boxes: picks sit on dense matter).
    """
    box = int(card["classifier"]["box"])
    boxes = cut_boxes(data, voxel_size, xyz, box, float(card["voxel_size"]))
    notes = []
    pol = polarity
    if polarity == "auto":
        pol = centre_polarity(boxes.images) if len(boxes.images) else "dark"
        if pol == "light":
            notes.append("dense matter looks bright at the picks (inverted tomogram); "
                         "inverting the boxes (override with --polarity dark)")
    images = -boxes.images if pol == "light" else boxes.images
    pred = predict_boxes(net, images, device=device)
    return Classification(boxes.kept, list(card["classes"]), pred["probabilities"],
                          pred["masks"], pred["densities"], pred["features"],
                          float(card["voxel_size"]), pol, notes)


def classified_table(table: pd.DataFrame, result: Classification) -> pd.DataFrame:
    """``table`` (the picks read, in order) with ``class`` set to the called class and
    ``class_probability`` added; the pick's former class is kept as ``picked_class``."""
    out = table.copy()
    if result.kept.size and not result.kept.all():
        raise ValueError("every pick must have been classified")
    if "class" in out:
        out["picked_class"] = out["class"]
    out["class"] = pd.Series(result.called, index=out.index, dtype=object)
    out["class_probability"] = np.round(result.probabilities.max(1), 6) if len(out) else []
    return out


def feature_table(table: pd.DataFrame, result: Classification) -> pd.DataFrame:
    """One row per pick: position (voxels), called class, probability, then ``f0 ...``."""
    cols = {"x": table["x"].to_numpy(), "y": table["y"].to_numpy(), "z": table["z"].to_numpy(),
            "class": result.called, "class_probability": result.probabilities.max(1)}
    feats = pd.DataFrame(result.features, columns=[f"f{i}" for i in
                                                   range(result.features.shape[1])])
    return pd.concat([pd.DataFrame(cols), feats], axis=1)


def embed_features(features: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """2D embeddings of feature vectors (n, d): ``pca`` always, ``tsne`` for n >= 10
    (perplexity min(30, (n - 1) / 3), PCA initialisation)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = np.asarray(features, dtype=np.float64)
    out = {"pca": PCA(n_components=2, random_state=seed).fit_transform(x)
           if len(x) >= 2 else np.zeros((len(x), 2))}
    if len(x) >= 10:
        out["tsne"] = TSNE(n_components=2, perplexity=min(30.0, (len(x) - 1) / 3.0),
                           init="pca", random_state=seed).fit_transform(x)
    return out


def plot_features(features: np.ndarray, labels: list[str], path: str | Path,
                  title: str = "") -> None:
    """PCA (and t-SNE) scatter of the feature vectors coloured by ``labels`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from formats import atomic_path

    emb = embed_features(features)
    fig, axes = plt.subplots(1, len(emb), figsize=(5.5 * len(emb), 5), squeeze=False)
    names = sorted(set(labels))
    lab = np.array(labels, dtype=object)
    for ax, (kind, xy) in zip(axes[0], emb.items()):
        for i, name in enumerate(names):
            sel = lab == name
            ax.scatter(xy[sel, 0], xy[sel, 1], s=8, color=f"C{i % 10}", label=name)
        ax.set_title(f"{kind.upper()} of the classifier features" + (f" ({title})" if title
                                                                      else ""))
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(fontsize=8, markerscale=2, loc="best")
    fig.tight_layout()
    with atomic_path(Path(path), overwrite=True) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
