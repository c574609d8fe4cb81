"""What every cryovis protocol shares: the tomogram input, its checks, per-tomogram keys."""

import re

from pyworkflow.protocol.params import PointerParam
from tomo.objects import SetOfTomograms, SetOfTomoMasks, TomoMask

from .. import Plugin

INPUT_TOMOGRAMS = "inputTomograms"


def addTomogramsParam(form, help="The tomograms to process (one step per tomogram)."):
    """``inputTomograms``, named and typed as tomo's own protocols do."""
    form.addParam(INPUT_TOMOGRAMS, PointerParam, pointerClass="SetOfTomograms",
                  label="Input tomograms", important=True, help=help)


def tomoKey(tomo):
    """A file-name-safe, unique key of a tomogram: its tsId, else its id in the set."""
    name = tomo.getTsId() or f"tomo{tomo.getObjId()}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def byKey(items):
    """``{tomoKey: item}`` (clones: safe across steps) of tomograms, masks, ... in the given
    order; a repeated key gets the item's id appended."""
    keyed = {}
    for item in items:
        key = tomoKey(item)
        keyed[key if key not in keyed else f"{key}_{item.getObjId()}"] = item.clone()
    return keyed


def derivedMask(source, path):
    """A TomoMask of file ``path`` computed from ``source`` (a Tomogram or a TomoMask): its
    tsId, sampling rate, origin and acquisition, and the tomogram it belongs to."""
    mask = TomoMask()
    mask.copyInfo(source)
    mask.setLocation(path)
    mask.setVolName(source.getVolName() if isinstance(source, TomoMask)
                    else source.getFileName())
    return mask


def tomogramsOfCoordinates(coords):
    """``{tsId: tomogram}`` (clones) of the tomograms a SetOfCoordinates3D has points on."""
    wanted = set(coords.getTSIds())
    return {tomo.getTsId(): tomo.clone() for tomo in coords.getPrecedents()
            if tomo.getTsId() in wanted}


def tiltRange(obj):
    """(min, max) degrees of the tilt range in ``obj``'s acquisition (a tomogram or a set),
    or None when it has none."""
    getter = getattr(obj, "getAcquisition", None)
    acq = getter() if getter else None
    if acq is None or acq.getAngleMin() is None or acq.getAngleMax() is None:
        return None
    low, high = float(acq.getAngleMin()), float(acq.getAngleMax())
    return (low, high) if high > low else None


class CryovisBase:
    """Mixin for the protocols (first base): checks and lookups on ``inputTomograms``."""

    @classmethod
    def getClassLabel(cls, prependPackageName=True):
        # The labels are a contract and already begin with "cryovis - ": Scipion's own
        # version would show "cryovis - cryovis - segment".
        return cls.__dict__.get("_label", cls.__name__)

    def _inputSetProblems(self, attr=INPUT_TOMOGRAMS, label="Input tomograms",
                          cls=SetOfTomograms, excluded=(SetOfTomoMasks,)):
        """Messages for a missing, wrongly typed or empty input set (empty list when fine)."""
        obj = getattr(self, attr).get()
        if obj is None:
            return [f"{label}: nothing selected; choose a {cls.__name__}."]
        if not isinstance(obj, cls) or isinstance(obj, excluded):
            return [f"{label}: a {type(obj).__name__} was given; this protocol needs a "
                    f"{cls.__name__}."]
        if obj.getSize() == 0:
            return [f"{label}: the set is empty."]
        return []

    def _engineProblems(self):
        problem = Plugin.programProblem()
        return [problem] if problem else []

    def _tomograms(self):
        """``{key: tomogram}`` of the input set, in set order (clones: safe across steps)."""
        return byKey(getattr(self, INPUT_TOMOGRAMS).get().iterItems(orderBy="id"))

    def _newMaskSet(self, suffix, like):
        """An empty SetOfTomoMasks ``tomomasks<suffix>.sqlite`` with the info of set ``like``."""
        masks = self._createSet(SetOfTomoMasks, "tomomasks%s.sqlite", suffix)
        masks.copyInfo(like)
        return masks
