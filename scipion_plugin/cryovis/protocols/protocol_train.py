"""cryovis - train from sparse labels: strokes -> pseudo-labels -> a segmentation network."""

import json
import os
import re

from pwem.protocols import EMProtocol
from pyworkflow.protocol.constants import STEPS_PARALLEL
from pyworkflow.protocol.params import (
    LEVEL_ADVANCED,
    FloatParam,
    IntParam,
    PointerParam,
    StringParam,
)
from tomo.objects import SetOfTomoMasks
from tomo.protocols.protocol_base import ProtTomoBase

from ..constants import OUT_MODEL
from ..objects import CryovisModel
from .base import CryovisBase, addTomogramsParam
from .engine import engineRecord, runEngine

TRAIN_TAG = "train"
CLASS_NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # they become file names (<stem>_<class>.mrc)


class ProtCryovisTrain(CryovisBase, EMProtocol, ProtTomoBase):
    """Train a segmentation network from a few painted strokes (the Nano-Ötzi pipeline).

    Each tomogram with strokes gets soft pseudo-labels from a random forest on ilastik-style
    features learnt at its strokes (``cryovis pseudolabel``, one step per tomogram); a 3D
    U-Net is then trained on all of them (``cryovis train segmenter --pseudolabels``). The
    output model segments any tomogram with "cryovis - segment" (its *Trained model*)."""

    _label = "cryovis - train from sparse labels"
    _possibleOutputs = {OUT_MODEL: CryovisModel}
    stepsExecutionMode = STEPS_PARALLEL

    def _defineParams(self, form):
        form.addSection(label="Input")
        addTomogramsParam(form, help="The tomograms to train on; those with strokes in "
                                     "*Strokes* are used (matched by tomogram id).")
        form.addParam("inputStrokes", PointerParam, pointerClass="SetOfTomoMasks",
                      label="Strokes (label maps)", important=True,
                      help="Painted label maps on the tomograms' grids (e.g. imported with "
                           "tomo's 'import tomomasks'): 0 = unlabelled, 1..K = the classes "
                           "in *Class names* order. Paint every class, background included.")
        form.addParam("classNames", StringParam, default="background membrane",
                      label="Class names",
                      help="Names of the painted values 1..K, separated by spaces "
                           "(letters, digits, _ and -).")
        form.addSection(label="Training")
        form.addParam("minutes", FloatParam, default=30.0, label="Training budget (minutes)",
                      help="Training stops after this wall time (or after *Maximum steps*), "
                           "keeping the model of its last validation.")
        form.addParam("maxSteps", IntParam, default=0, expertLevel=LEVEL_ADVANCED,
                      label="Maximum steps",
                      help="Optimisation steps at most; 0: the engine's default (2000).")
        form.addParam("trees", IntParam, default=32, expertLevel=LEVEL_ADVANCED,
                      label="Random-forest trees", help="Trees of the weak classifier.")
        form.addParam("trainingOptions", StringParam, default="", expertLevel=LEVEL_ADVANCED,
                      label="Training options (JSON)",
                      help='Options of `cryovis train segmenter --config`, e.g. {"network": '
                           '{"base_channels": 8, "depth": 3}, "patch_size": [48, 48, 48]}. '
                           "Empty: the engine's defaults.")
        form.addParallelSection(threads=2, mpi=0)

    # ------------------------------------------------------------------ steps
    def _strokesByTsId(self):
        strokes = self.inputStrokes.get()
        return {m.getTsId(): m.clone() for m in strokes.iterItems()} if strokes else {}

    def _painted(self):
        """``{key: (tomogram, its strokes)}`` of the tomograms that have strokes."""
        strokes = self._strokesByTsId()
        return {key: (tomo, strokes[tomo.getTsId()]) for key, tomo in self._tomograms().items()
                if tomo.getTsId() in strokes}

    def _classes(self):
        return self.classNames.get().split()

    def _softPath(self, key):
        return self._getExtraPath(f"{key}_soft.mrc")

    def _modelStem(self):
        return self._getExtraPath("model", "cryovis_model")

    def _insertAllSteps(self):
        steps = [self._insertFunctionStep(self.pseudolabelStep, key, prerequisites=[])
                 for key in self._painted()]
        train = self._insertFunctionStep(self.trainStep, prerequisites=steps)
        self._insertFunctionStep(self.createOutputStep, prerequisites=[train])

    def pseudolabelStep(self, key):
        tomo, strokes = self._painted()[key]
        args = ["pseudolabel", os.path.abspath(tomo.getFileName()),
                "--labels", os.path.abspath(strokes.getFileName()),
                "--classes", *self._classes(), "--out", self._softPath(key),
                "--labels-out", self._getExtraPath(f"{key}_pseudolabels.mrc"),
                "--trees", self.trees.get(), "--voxel-size", tomo.getSamplingRate(),
                "--threads", 1]
        runEngine(self, f"pseudolabel_{key}", args)

    def trainStep(self):
        painted = self._painted()
        args = ["train", "segmenter",
                "--tomograms", *(os.path.abspath(t.getFileName()) for t, _ in painted.values()),
                "--pseudolabels", *(self._softPath(key) for key in painted),
                "--out", self._modelStem(), "--minutes", self.minutes.get(),
                "--voxel-size", self.inputTomograms.get().getSamplingRate(),
                "--threads", self.numberOfThreads.get(), "--no-progress"]
        if self.maxSteps.get() > 0:
            args += ["--max-steps", self.maxSteps.get()]
        if self.trainingOptions.get():
            args += ["--config", self.trainingOptions.get()]
        runEngine(self, TRAIN_TAG, args)

    def createOutputStep(self):
        path = os.path.abspath(self._modelStem() + ".pt")
        with open(os.path.splitext(path)[0] + ".json") as fh:
            card = json.load(fh)
        model = CryovisModel(path=path, classes=card["classes"],
                             voxelSize=float(card["voxel_size"]))
        self._defineOutputs(**{OUT_MODEL: model})
        self._defineSourceRelation(self.inputTomograms, model)
        self._defineSourceRelation(self.inputStrokes, model)

    # ------------------------------------------------------------------- info
    def _validate(self):
        errors = self._inputSetProblems()
        errors += self._inputSetProblems("inputStrokes", "Strokes", SetOfTomoMasks, excluded=())
        classes = self._classes()
        if len(classes) < 2:
            errors.append(f"Class names: give at least two (background included), got "
                          f"{self.classNames.get()!r}.")
        bad = [c for c in classes if not CLASS_NAME.match(c)]
        if bad:
            errors.append(f"Class names: {', '.join(bad)} may hold only letters, digits, _ "
                          "and -.")
        if len(set(classes)) != len(classes):
            errors.append("Class names: each name once.")
        if not self.minutes.get() > 0:
            errors.append(f"Training budget must be positive, got {self.minutes.get()} min.")
        if self.trainingOptions.get():
            try:
                json.loads(self.trainingOptions.get())
            except ValueError as exc:
                errors.append(f"Training options: not JSON ({exc}).")
        if not errors:
            painted = self._painted()
            if not painted:
                errors.append("Strokes: none of them has the tomogram id of an input "
                              "tomogram.")
            for key, (tomo, strokes) in painted.items():
                if tuple(strokes.getDimensions()) != tuple(tomo.getDimensions()):
                    errors.append(f"Strokes of {key}: {strokes.getDimensions()} voxels, its "
                                  f"tomogram {tomo.getDimensions()}; they must be on its grid.")
        return errors + self._engineProblems()

    def _warnings(self):
        if self.inputTomograms.get() is None or self.inputStrokes.get() is None:
            return []
        unpainted = [key for key, tomo in self._tomograms().items()
                     if tomo.getTsId() not in self._strokesByTsId()]
        if unpainted:
            return [f"No strokes for {', '.join(unpainted)}: not used for training."]
        return []

    def _summary(self):
        if not self.hasAttribute(OUT_MODEL):
            return ["Not finished yet: no model."]
        model = getattr(self, OUT_MODEL)
        record = engineRecord(self, TRAIN_TAG)
        best = record.get("best_val_dice")
        lines = [f"Model {model.getPath()}: classes {', '.join(model.getClasses())}, "
                 f"{model.getVoxelSize():g} Å/voxel, trained on {len(self._painted())} "
                 f"tomogram(s) for {record['steps']} steps ({record['stop']}"
                 f"{f', best validation Dice {best:.3f}' if best is not None else ''})."]
        for key in self._painted():
            pl = engineRecord(self, f"pseudolabel_{key}")
            fractions = ", ".join(f"{c} {100 * f:.1f} %" for c, f in pl["fractions"].items())
            lines.append(f"{key}: pseudo-labels {fractions}.")
        return lines

    def _methods(self):
        if not self.hasAttribute(OUT_MODEL):
            return []
        return [f"Sparse strokes of {len(self._classes())} classes "
                f"({', '.join(self._classes())}) on {len(self._painted())} tomogram(s) were "
                f"turned into soft pseudo-labels by a {self.trees.get()}-tree random forest on "
                "ilastik-style features with class priors re-estimated by EM, and a 3D U-Net "
                f"was trained on them for at most {self.minutes.get():g} minutes with cryovis, "
                "following the Nano-Ötzi semi-supervised pipeline [Nguyen2021]."]

    def _citations(self):
        return ["Nguyen2021"]
