"""The weak classifier: a random forest (scikit-learn) kept as plain arrays.

A trained forest is stored as an ``.npz`` of numeric arrays (node children, split features
and thresholds, leaf class fractions) read with ``allow_pickle=False``: a classifier file a
colleague sends cannot execute code, unlike a pickled or joblib'd scikit-learn model.
Prediction rebuilds scikit-learn's trees from those arrays and gives what the trained
model's ``predict_proba`` gives (tested), with any scikit-learn version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CryovisError

FOREST_KIND = "cryovis-pseudolabel-classifier"
FOREST_VERSION = 1


@dataclass
class Forest:
    """A random forest over feature columns, with what applying it needs.

    Node arrays concatenate all trees (``roots`` are each tree's first node); ``left`` is -1
    at leaves; ``proba`` holds each node's class fractions (rows sum to 1). ``labels`` are the
    stroke values of the classes (1..K as painted), ``names`` their names, ``train_priors``
    the class fractions of the training samples, ``scales`` the feature scales (voxels) at
    ``voxel_size`` Å, and ``feature_names`` the columns (see ``features.feature_names``).
    """

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    proba: np.ndarray
    roots: np.ndarray
    max_depth: int
    labels: np.ndarray
    names: list[str]
    train_priors: np.ndarray
    scales: list[float]
    voxel_size: float
    feature_names: list[str]
    _built: list | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    def predict_proba(self, x: np.ndarray, threads: int = 1) -> np.ndarray:
        """Class probabilities ``[n, K]`` (float32) of feature rows ``x`` ``[n, n_features]``
        (the mean of the trees' leaf fractions, as scikit-learn's ``predict_proba``)."""
        from concurrent.futures import ThreadPoolExecutor

        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise ValueError(f"expected {len(self.feature_names)} feature columns, got "
                             f"shape {x.shape}")
        trees = self._trees()
        # scikit-learn's tree traversal releases the GIL: threads run trees in parallel.
        with ThreadPoolExecutor(max(1, threads)) as pool:
            total = sum(pool.map(lambda t: t.predict(x).reshape(len(x), -1), trees))
        return (total / len(trees)).astype(np.float32)

    def _trees(self) -> list:
        """scikit-learn ``Tree`` objects rebuilt from the arrays (cached).

        The C traversal of scikit-learn predicts a million voxels in 6.7 s on 2 threads; the
        same traversal in numpy took 70 s.
        """
        if self._built is None:
            from sklearn.tree._tree import NODE_DTYPE, Tree

            bounds = list(self.roots) + [len(self.left)]
            built = []
            for lo, hi in zip(bounds[:-1], bounds[1:]):
                nodes = np.zeros(hi - lo, dtype=NODE_DTYPE)
                inner = self.left[lo:hi] >= 0
                nodes["left_child"] = np.where(inner, self.left[lo:hi] - lo, -1)
                nodes["right_child"] = np.where(inner, self.right[lo:hi] - lo, -1)
                nodes["feature"] = np.where(inner, self.feature[lo:hi], -2)
                nodes["threshold"] = np.where(inner, self.threshold[lo:hi], -2.0)
                tree = Tree(len(self.feature_names), np.array([self.n_classes], np.intp), 1)
                tree.__setstate__({"max_depth": self.max_depth, "node_count": hi - lo,
                                   "nodes": nodes,
                                   "values": self.proba[lo:hi, None, :].astype(np.float64)})
                built.append(tree)
            self._built = built
        return self._built


def fit_forest(x: np.ndarray, y: np.ndarray, labels: np.ndarray, names: list[str],
               scales: list[float], voxel_size: float, feature_names: list[str],
               n_trees: int = 32, max_depth: int = 14, min_samples_leaf: int = 3,
               seed: int = 0, threads: int = 1) -> Forest:
    """Train a random forest on feature rows ``x`` with class indices ``y`` (0..K-1, the
    position in ``labels``) and return it as a :class:`Forest`."""
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(n_estimators=n_trees, max_depth=max_depth,
                                   min_samples_leaf=min_samples_leaf, max_features="sqrt",
                                   random_state=seed, n_jobs=threads)
    model.fit(np.asarray(x, np.float32), y)
    k = len(labels)
    parts: dict[str, list[np.ndarray]] = {n: [] for n in ("left", "right", "feature",
                                                          "threshold", "proba")}
    roots, offset, depth = [], 0, 0
    for est in model.estimators_:
        t = est.tree_
        # Leaf fractions over the forest's classes (a bootstrap may miss one of them).
        frac = np.zeros((t.node_count, k), np.float32)
        value = t.value[:, 0, :]
        frac[:, est.classes_.astype(int)] = value / value.sum(axis=1, keepdims=True)
        inner = t.children_left >= 0
        parts["left"].append(np.where(inner, t.children_left + offset, -1))
        parts["right"].append(np.where(inner, t.children_right + offset, -1))
        parts["feature"].append(np.where(inner, t.feature, 0))
        parts["threshold"].append(t.threshold)
        parts["proba"].append(frac)
        roots.append(offset)
        offset += t.node_count
        depth = max(depth, t.max_depth)
    counts = np.bincount(y, minlength=k).astype(np.float64)
    return Forest(left=np.concatenate(parts["left"]).astype(np.int32),
                  right=np.concatenate(parts["right"]).astype(np.int32),
                  feature=np.concatenate(parts["feature"]).astype(np.int32),
                  threshold=np.concatenate(parts["threshold"]).astype(np.float64),
                  proba=np.concatenate(parts["proba"]), roots=np.array(roots, np.int32),
                  max_depth=int(depth) + 1, labels=np.asarray(labels, np.int64),
                  names=list(names), train_priors=counts / counts.sum(),
                  scales=[float(s) for s in scales], voxel_size=float(voxel_size),
                  feature_names=list(feature_names))


_ARRAYS = ("left", "right", "feature", "threshold", "proba", "roots", "labels", "train_priors")


def save_forest(path: str | Path, forest: Forest, overwrite: bool = False) -> None:
    """Write ``forest`` as an ``.npz`` of numeric arrays plus a JSON header (no pickle)."""
    from formats import atomic_path

    header = {"kind": FOREST_KIND, "version": FOREST_VERSION, "names": forest.names,
              "scales": forest.scales, "voxel_size": forest.voxel_size,
              "feature_names": forest.feature_names, "max_depth": forest.max_depth}
    arrays = {name: getattr(forest, name) for name in _ARRAYS}
    with atomic_path(Path(path), overwrite=overwrite) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, header=np.frombuffer(json.dumps(header).encode(), np.uint8),
                            **arrays)


def load_forest(path: str | Path) -> Forest:
    """Read a classifier written by :func:`save_forest`; CryovisError (naming the file) for
    anything else."""
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as data:
            header = json.loads(bytes(data["header"]).decode())
            arrays = {name: np.array(data[name]) for name in _ARRAYS}
    except FileNotFoundError:
        raise CryovisError(f"{p}: no such file") from None
    except (OSError, ValueError, KeyError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CryovisError(f"{p}: not a cryovis pseudo-label classifier "
                           f"({type(exc).__name__})") from None
    if not isinstance(header, dict) or header.get("kind") != FOREST_KIND:
        raise CryovisError(f"{p}: not a cryovis pseudo-label classifier")
    if header.get("version") != FOREST_VERSION:
        raise CryovisError(f"{p}: classifier version {header.get('version')}, this cryovis "
                           f"reads version {FOREST_VERSION}")
    forest = Forest(**arrays, max_depth=int(header["max_depth"]), names=list(header["names"]),
                    scales=[float(s) for s in header["scales"]],
                    voxel_size=float(header["voxel_size"]),
                    feature_names=list(header["feature_names"]))
    n_nodes = len(forest.left)
    if (forest.proba.shape != (n_nodes, len(forest.labels))
            or forest.left.max() >= n_nodes or forest.right.max() >= n_nodes
            or len(forest.names) != len(forest.labels)
            or forest.feature.max() >= len(forest.feature_names)):
        raise CryovisError(f"{p}: inconsistent classifier arrays (a damaged file)")
    return forest
