"""cryovis - pick particles: learned, blob or template picking -> SetOfCoordinates3D."""

import os
import re

from pyworkflow.protocol.constants import STEPS_PARALLEL
from pyworkflow.protocol.params import (
    LEVEL_ADVANCED,
    BooleanParam,
    EnumParam,
    FileParam,
    FloatParam,
    IntParam,
    PointerParam,
    StringParam,
)
from tomo.objects import SetOfCoordinates3D
from tomo.protocols import ProtTomoPicking

from formats import read_particles

from ..constants import OUT_COORDINATES
from ..convert import coordinatesFromTable
from .base import CryovisBase, tiltRange
from .engine import engineRecord, runEngine

# `cryovis pick --method` values, in the order of the form's choices (saved runs and
# workflows store the index): the default is the engine's own, the learned picker with the
# model the engine ships.
METHODS = ["unet", "blob", "template"]
METHOD_LABELS = {"unet": "learned (U-Net picker)", "blob": "blob (difference of Gaussians)",
                 "template": "template matching (with orientations)"}
TEMPLATE = 2


class ProtCryovisPick(CryovisBase, ProtTomoPicking):
    """Pick particles in tomograms. Each coordinate carries the engine's class (attribute
    ``_cryovisClass``) and score; an orientation, when the method gives one (template
    matching), is the coordinate's transformation matrix."""

    _label = "cryovis - pick particles"
    _possibleOutputs = {OUT_COORDINATES: SetOfCoordinates3D}
    stepsExecutionMode = STEPS_PARALLEL

    def _defineParams(self, form):
        super()._defineParams(form)
        form.addParam("method", EnumParam, choices=[METHOD_LABELS[m] for m in METHODS],
                      default=0, label="Method",
                      help="learned: a 3D U-Net picker that also classifies, the engine's "
                           "shipped picker or one trained with `cryovis train picker` (Model "
                           "below). blob: local maxima of a difference-of-Gaussians filter "
                           "tuned to the particle diameter (the SHREC 2021 baseline). "
                           "template: masked local cross-correlation with a template map over "
                           "a uniform grid of orientations; every pick gets the orientation "
                           "of its best match.")
        form.addParam("inputTemplate", PointerParam, pointerClass="Volume", allowsNull=True,
                      condition=f"method == {TEMPLATE}", label="Template",
                      help="The structure to find: a cubic map at the tomograms' sampling "
                           "rate, dense matter positive (e.g. imported with 'import "
                           "volumes', or a subtomogram average).")
        form.addParam("angularStep", FloatParam, default=12.0,
                      condition=f"method == {TEMPLATE}", label="Angular step (degrees)",
                      help="Spacing of the orientation grid (12: 8,580 orientations; the "
                           "search time grows as its inverse cube).")
        form.addParam("symmetry", StringParam, default="C1", condition=f"method == {TEMPLATE}",
                      label="Symmetry", help="Point group of the template about its z axis: "
                                             "Cn or Dn.")
        form.addParam("scoreThreshold", FloatParam, default=0.0, expertLevel=LEVEL_ADVANCED,
                      condition=f"method == {TEMPLATE}", label="Score cut-off (NCC)",
                      help="Keep matches scoring above this; 0: the cut-off that expects one "
                           "false positive per tomogram (from the spread of the search's "
                           "scores, as pytom-match-pick).")
        form.addParam("useTiltRange", BooleanParam, default=True,
                      condition=f"method == {TEMPLATE}", label="Missing-wedge weighting",
                      help="Weight the template by the missing wedge of the tomograms' "
                           "acquisition tilt range, when they have one.")
        form.addParam("diameter", FloatParam, default=120.0, label="Particle diameter (Å)",
                      help="Expected particle diameter: the box size, and the blob filter's "
                           "scale.")
        form.addParam("minScore", FloatParam, default=4.0, expertLevel=LEVEL_ADVANCED,
                      condition="method == 1", label="Minimum score (robust z-score)",
                      help="blob: minimum robust z-score of the filter's response at a pick.")
        form.addParam("boxSize", IntParam, default=0, expertLevel=LEVEL_ADVANCED,
                      label="Box size (voxels)",
                      help="Box size of the output coordinates; 0: the template's box "
                           "(template matching), else 1.5 x the diameter.")
        form.addParam("model", FileParam, default="", allowsNull=True,
                      condition="method == 0", label="Picker model (.pt)",
                      help="A picker written by `cryovis train picker` (MODEL.pt with its "
                           "MODEL.json beside it). Empty: the shipped picker.")
        form.addParallelSection(threads=3, mpi=0)

    # ------------------------------------------------------------------ steps
    def _insertAllSteps(self):
        steps = [self._insertFunctionStep(self.pickStep, key, prerequisites=[])
                 for key in self._tomograms()]
        self._insertFunctionStep(self.createOutputStep, prerequisites=steps)

    def _picksPath(self, key):
        return self._getExtraPath(f"{key}_picks.csv")

    def _method(self):
        return METHODS[self.method.get()]

    def pickStep(self, key):
        tomo = self._tomograms()[key]
        args = ["pick", os.path.abspath(tomo.getFileName()), "--method", self._method(),
                "--out", self._picksPath(key), "--format", "csv", "--tomo-name", key,
                "--voxel-size", tomo.getSamplingRate(), "--threads", 1]
        if self._method() == "blob":
            args += ["--diameter", self.diameter.get(), "--min-score", self.minScore.get()]
        elif self._method() == "template":
            args += ["--template", self._templatePath(), "--angular-step",
                     self.angularStep.get(), "--symmetry", self.symmetry.get()]
            if self.scoreThreshold.get() > 0:
                args += ["--threshold", self.scoreThreshold.get()]
            tilt = tiltRange(tomo) if self.useTiltRange else None
            if tilt is not None:
                args += ["--tilt-range", *tilt]
        elif self.model.get():
            args += ["--model", os.path.abspath(self.model.get())]
        runEngine(self, f"pick_{key}", args)

    def createOutputStep(self):
        inputSet = self.inputTomograms.get()
        coords = self._createSetOfCoordinates3D(self.inputTomograms)
        coords.setSamplingRate(inputSet.getSamplingRate())
        coords.setBoxSize(self._boxSize())
        for key, tomo in self._tomograms().items():
            if engineRecord(self, f"pick_{key}").get("n_picks") == 0:
                continue  # the engine found nothing there (and says so in the log)
            table = read_particles(self._picksPath(key), format="csv")
            for coord in coordinatesFromTable(table, tomo):
                coords.append(coord)
        self._defineOutputs(**{OUT_COORDINATES: coords})
        self._defineSourceRelation(self.inputTomograms, coords)

    def _templatePath(self):
        # Scipion may suffix a file name with its format ("map.mrc:mrc")
        return os.path.abspath(re.sub(r":[a-z]+$", "", self.inputTemplate.get().getFileName()))

    def _boxSize(self):
        if self.boxSize.get() > 0:
            return self.boxSize.get()
        if self._method() == "template":
            return int(self.inputTemplate.get().getDimensions()[0])
        return int(round(1.5 * self.diameter.get() / self.inputTomograms.get().getSamplingRate()))

    # ------------------------------------------------------------------- info
    def _validate(self):
        errors = self._inputSetProblems() + self._engineProblems()
        if not self.diameter.get() > 0:
            errors.append(f"Particle diameter must be positive, got {self.diameter.get()} Å.")
        if self._method() == "template":
            errors += self._templateProblems()
        model = self.model.get()
        if self._method() == "unet" and model:
            card = os.path.splitext(model)[0] + ".json"
            if not os.path.isfile(model):
                errors.append(f"Picker model: {model} does not exist.")
            elif not os.path.isfile(card):
                errors.append(f"Picker model: {model} has no model card {card} beside it.")
        return errors

    def _templateProblems(self):
        template = self.inputTemplate.get()
        if template is None:
            return ["Template: template matching needs a template volume."]
        errors = []
        dims = template.getDimensions()
        if len(set(dims)) != 1:
            errors.append(f"Template: {template.getFileName()} is {dims} voxels; it must be "
                          "cubic.")
        tomos = self.inputTomograms.get()
        if tomos is not None and abs(template.getSamplingRate() / tomos.getSamplingRate()
                                     - 1) > 0.01:
            errors.append(f"Template: {template.getSamplingRate():g} Å/voxel, the tomograms "
                          f"{tomos.getSamplingRate():g}; give it at their sampling rate.")
        if not 0 < self.angularStep.get() <= 90:
            errors.append(f"Angular step must be in (0, 90] degrees, got "
                          f"{self.angularStep.get()}.")
        if not 0 <= self.scoreThreshold.get() < 1:
            errors.append(f"Score cut-off must be in [0, 1), got {self.scoreThreshold.get()}.")
        if not re.fullmatch(r"[CD][1-9][0-9]*", self.symmetry.get().strip().upper()):
            errors.append(f"Symmetry: {self.symmetry.get()!r} is not Cn or Dn.")
        return errors

    def _how(self):
        """The method's settings, for the summary and the methods text."""
        if self._method() == "blob":
            return (f"expected diameter {self.diameter.get():g} Å, minimum robust z-score "
                    f"{self.minScore.get():g}")
        if self._method() == "template":
            return (f"template {os.path.basename(self._templatePath())}, "
                    f"{self.angularStep.get():g}° grid, symmetry {self.symmetry.get()}")
        if self.model.get():
            return f"model {os.path.basename(self.model.get())}"
        return "the shipped picker"

    def _summary(self):
        if not self.hasAttribute(OUT_COORDINATES):
            return ["Not finished yet: no coordinates."]
        coords = getattr(self, OUT_COORDINATES)
        n = self.inputTomograms.get().getSize()
        how = (self._how() if self._method() == "template"
               else f"diameter {self.diameter.get():g} Å")
        lines = [f"{coords.getSize()} particles picked in {n} tomograms "
                 f"({METHOD_LABELS[self._method()]}, {how}), "
                 f"box {coords.getBoxSize()} voxels at {coords.getSamplingRate():g} Å/voxel."]
        if self._method() == "template":
            lines.append("Each coordinate's transformation matrix is the orientation of its "
                         "best match.")
        return lines

    def _methods(self):
        if not self.hasAttribute(OUT_COORDINATES):
            return []
        return [f"Particles were picked with cryovis ({METHOD_LABELS[self._method()]}, "
                f"{self._how()}); the pickers are scored with the SHREC 2021 metrics "
                "[Gubins2021]."]

    def _citations(self):
        return ["Gubins2021"]
