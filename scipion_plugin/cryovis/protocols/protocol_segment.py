"""cryovis - segment: membrane (or any trained class) segmentation of tomograms."""

import os

from pwem.protocols import EMProtocol
from pyworkflow.protocol.constants import STEPS_PARALLEL
from pyworkflow.protocol.params import LEVEL_ADVANCED, BooleanParam, FileParam
from tomo.objects import SetOfTomoMasks, TomoMask
from tomo.protocols.protocol_base import ProtTomoBase

from ..constants import OUT_MASKS, OUT_PROBABILITIES
from .base import CryovisBase, addTomogramsParam
from .engine import engineRecord, runEngine


class ProtCryovisSegment(CryovisBase, EMProtocol, ProtTomoBase):
    """Segment tomograms with a 3D U-Net: the shipped membrane model, or a model trained with
    ``cryovis train segmenter``. Outputs the label masks (0 background, 1..K classes) and the
    per-class probability maps, at the tomograms' sampling rate."""

    _label = "cryovis - segment"
    _possibleOutputs = {OUT_MASKS: SetOfTomoMasks, OUT_PROBABILITIES: SetOfTomoMasks}
    stepsExecutionMode = STEPS_PARALLEL

    def _defineParams(self, form):
        form.addSection(label="Input")
        addTomogramsParam(form)
        form.addParam("model", FileParam, default="", allowsNull=True,
                      label="Model (.pt)",
                      help="A segmentation model written by `cryovis train segmenter` (MODEL.pt "
                           "with its MODEL.json beside it). Empty: the shipped membrane model.")
        form.addParam("tta", BooleanParam, default=False, expertLevel=LEVEL_ADVANCED,
                      label="Test-time augmentation",
                      help="Average the 8 axis flips (8 times slower, slightly smoother).")
        form.addParallelSection(threads=3, mpi=0)

    # ------------------------------------------------------------------ steps
    def _insertAllSteps(self):
        steps = [self._insertFunctionStep(self.segmentStep, key, prerequisites=[])
                 for key in self._tomograms()]
        self._insertFunctionStep(self.createOutputStep, prerequisites=steps)

    def segmentStep(self, key):
        tomo = self._tomograms()[key]
        args = ["segment", os.path.abspath(tomo.getFileName()),
                "--out", self._getExtraPath(f"{key}_probabilities.mrc"),
                "--labels-out", self._getExtraPath(f"{key}_labels.mrc"),
                "--voxel-size", tomo.getSamplingRate(), "--threads", 1]
        if self.model.get():
            args += ["--model", os.path.abspath(self.model.get())]
        if self.tta:
            args.append("--tta")
        runEngine(self, f"segment_{key}", args)

    def createOutputStep(self):
        tomos = self._tomograms()
        records = {key: engineRecord(self, f"segment_{key}") for key in tomos}
        classes = next(iter(records.values()))["classes"]
        masks = self._newMaskSet("labels")
        probs = {c: self._newMaskSet(f"prob_{c}") for c in classes}
        for key, tomo in tomos.items():
            masks.append(self._mask(tomo, self._getExtraPath(f"{key}_labels.mrc")))
            for c, path in records[key]["outputs"].items():
                probs[c].append(self._mask(tomo, path))
        outputs = {OUT_MASKS: masks}
        if len(classes) == 1:
            outputs[OUT_PROBABILITIES] = probs[classes[0]]
        else:
            outputs.update({f"{OUT_PROBABILITIES}_{c}": s for c, s in probs.items()})
        self._defineOutputs(**outputs)
        for out in outputs.values():
            self._defineSourceRelation(self.inputTomograms, out)

    def _classes(self):
        """The classes the engine segmented (from its first record), or None before that."""
        for key in self._tomograms():
            record = engineRecord(self, f"segment_{key}")
            if record is not None:
                return record["classes"]
        return None

    def _newMaskSet(self, suffix):
        masks = self._createSet(SetOfTomoMasks, "tomomasks%s.sqlite", suffix)
        masks.copyInfo(self.inputTomograms.get())
        return masks

    @staticmethod
    def _mask(tomo, path):
        mask = TomoMask()
        mask.copyInfo(tomo)
        mask.setLocation(path)
        mask.setVolName(tomo.getFileName())
        return mask

    # ------------------------------------------------------------------- info
    def _validate(self):
        errors = self._inputSetProblems() + self._engineProblems()
        model = self.model.get()
        if model:
            card = os.path.splitext(model)[0] + ".json"
            if not os.path.isfile(model):
                errors.append(f"Model: {model} does not exist.")
            elif not os.path.isfile(card):
                errors.append(f"Model: {model} has no model card {card} beside it.")
        return errors

    def _summary(self):
        if not self.hasAttribute(OUT_MASKS):
            return ["Not finished yet: no masks."]
        model = self.model.get() or "the shipped membrane model"
        return [f"{getattr(self, OUT_MASKS).getSize()} tomograms segmented with {model}; "
                f"classes: {', '.join(self._classes())}.",
                f"Masks: *{OUT_MASKS}* (0 background, 1..K classes, probability > 0.5); "
                f"probability maps: *{OUT_PROBABILITIES}*."]

    def _methods(self):
        if not self.hasAttribute(OUT_MASKS):
            return []
        model = (f"a model trained with cryovis ({os.path.basename(self.model.get())})"
                 if self.model.get() else "cryovis' shipped membrane model (3D U-Net trained on "
                 "simulated tomograms)")
        return [f"{getattr(self, OUT_MASKS).getSize()} tomograms were segmented with {model}, "
                "by tiled inference with blended overlaps [Nguyen2021, Lamm2024]."]

    def _citations(self):
        return ["Lamm2024", "Nguyen2021", "Zhou2023"]
