"""What every cryovis protocol shares: the tomogram input, its checks, per-tomogram keys."""

import re

from pyworkflow.protocol.params import PointerParam
from tomo.objects import SetOfTomograms, SetOfTomoMasks

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


def tomogramsOfCoordinates(coords):
    """``{tsId: tomogram}`` (clones) of the tomograms a SetOfCoordinates3D has points on."""
    wanted = set(coords.getTSIds())
    return {tomo.getTsId(): tomo.clone() for tomo in coords.getPrecedents()
            if tomo.getTsId() in wanted}


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
        tomos = {}
        for tomo in getattr(self, INPUT_TOMOGRAMS).get().iterItems(orderBy="id"):
            key = tomoKey(tomo)
            if key in tomos:
                key = f"{key}_{tomo.getObjId()}"
            tomos[key] = tomo.clone()
        return tomos
