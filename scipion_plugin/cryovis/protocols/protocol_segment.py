"""cryovis - segment: membrane (or any trained class) segmentation of tomograms."""

import os

from pwem.protocols import EMProtocol
from pyworkflow.protocol.constants import STEPS_PARALLEL
from pyworkflow.protocol.params import LEVEL_ADVANCED, BooleanParam, FileParam, PointerParam
from tomo.objects import SetOfTomoMasks
from tomo.protocols.protocol_base import ProtTomoBase

from ..constants import OUT_MASKS, OUT_PROBABILITIES
from .base import CryovisBase, addTomogramsParam, derivedMask
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
        form.addParam("inputModel", PointerParam, pointerClass="CryovisModel",
                      allowsNull=True, label="Trained model",
                      help="A model of 'cryovis - train from sparse labels': one probability "
                           "map set per class and the labels as painted. Empty: *Model "
                           "(.pt)*, else the shipped membrane model.")
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
        if self._modelPath():
            args += ["--model", os.path.abspath(self._modelPath())]
        if self.tta:
            args.append("--tta")
        runEngine(self, f"segment_{key}", args)

    def createOutputStep(self):
        tomos = self._tomograms()
        records = {key: engineRecord(self, f"segment_{key}") for key in tomos}
        classes = next(iter(records.values()))["classes"]
        inputSet = self.inputTomograms.get()
        masks = self._newMaskSet("labels", inputSet)
        probs = {c: self._newMaskSet(f"prob_{c}", inputSet) for c in classes}
        for key, tomo in tomos.items():
            masks.append(derivedMask(tomo, self._getExtraPath(f"{key}_labels.mrc")))
            for c, path in records[key]["outputs"].items():
                probs[c].append(derivedMask(tomo, path))
        outputs = {OUT_MASKS: masks}
        if len(classes) == 1:
            outputs[OUT_PROBABILITIES] = probs[classes[0]]
        else:
            outputs.update({f"{OUT_PROBABILITIES}_{c}": s for c, s in probs.items()})
        self._defineOutputs(**outputs)
        for out in outputs.values():
            self._defineSourceRelation(self.inputTomograms, out)

    def _modelPath(self):
        """MODEL.pt of the trained model or the model file, or None for the shipped model."""
        if self.inputModel.get() is not None:
            return self.inputModel.get().getPath()
        return self.model.get() or None

    def _classes(self):
        """The classes the engine segmented (from its first record), or None before that."""
        for key in self._tomograms():
            record = engineRecord(self, f"segment_{key}")
            if record is not None:
                return record["classes"]
        return None

    # ------------------------------------------------------------------- info
    def _validate(self):
        errors = self._inputSetProblems() + self._engineProblems()
        if self.inputModel.get() is not None and self.model.get():
            errors.append("Give a Trained model or a Model (.pt) file, not both.")
        model = self._modelPath()
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
        model = self._modelPath() or "the shipped membrane model"
        classes = self._classes()
        maps = (f"*{OUT_PROBABILITIES}*" if len(classes) == 1
                else ", ".join(f"*{OUT_PROBABILITIES}_{c}*" for c in classes))
        return [f"{getattr(self, OUT_MASKS).getSize()} tomograms segmented with {model}; "
                f"classes: {', '.join(classes)}.",
                f"Masks: *{OUT_MASKS}* (one-class model: 0 background, 1 where probability > "
                f"0.5; K-class model: the most probable class, numbered as in training); "
                f"probability maps: {maps}."]

    def _methods(self):
        if not self.hasAttribute(OUT_MASKS):
            return []
        model = (f"a model trained with cryovis ({os.path.basename(self._modelPath())})"
                 if self._modelPath() else "cryovis' shipped membrane model (3D U-Net trained on "
                 "simulated tomograms)")
        return [f"{getattr(self, OUT_MASKS).getSize()} tomograms were segmented with {model}, "
                "by tiled inference with blended overlaps [Nguyen2021, Lamm2024]."]

    def _citations(self):
        return ["Lamm2024", "Nguyen2021", "Zhou2023"]
