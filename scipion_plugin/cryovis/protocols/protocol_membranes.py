"""cryovis - membrane surfaces: membrane masks or probability maps -> instances, fitted surfaces."""

import os

from pwem.protocols import EMProtocol
from pyworkflow.protocol.constants import STEPS_PARALLEL
from pyworkflow.protocol.params import LEVEL_ADVANCED, BooleanParam, FloatParam, PointerParam
from tomo.objects import SetOfTomoMasks
from tomo.protocols.protocol_base import ProtTomoBase

from ..constants import OUT_INSTANCES, OUT_REFINED
from .base import CryovisBase, byKey, derivedMask, tiltRange
from .engine import engineRecord, runEngine


class ProtCryovisMembranes(CryovisBase, EMProtocol, ProtTomoBase):
    """Fit the membranes of segmented tomograms with ``cryovis membranes``: connected regions
    merged into membrane instances, each fitted with an ellipsoid, a Gaussian-process implicit
    surface (closed vesicles, completed across the missing wedge) or an open sheet. Outputs
    the instance label maps and the refined masks of uniform thickness; meshes (.obj), the
    per-membrane table (area, volume, curvature, thickness, fit residual) and the
    uncertainty maps are in the extra folder."""

    _label = "cryovis - membrane surfaces"
    _possibleOutputs = {OUT_INSTANCES: SetOfTomoMasks, OUT_REFINED: SetOfTomoMasks}
    stepsExecutionMode = STEPS_PARALLEL

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputMasks", PointerParam, pointerClass="SetOfTomoMasks",
                      label="Membrane segmentations", important=True,
                      help="Membrane masks or probability maps, e.g. the probabilities of "
                           "'cryovis - segment'.")
        form.addParam("threshold", FloatParam, default=0.0, expertLevel=LEVEL_ADVANCED,
                      label="Threshold",
                      help="Membrane where the map exceeds this; 0: the engine's default "
                           "(0.5 for probability maps, masks as they are).")
        form.addParam("useTiltRange", BooleanParam, default=True, label="Use the tilt range",
                      help="Report, per membrane, the part of its surface no tilt shows "
                           "edge-on (from the tomograms' acquisition, when it has one).")
        form.addParallelSection(threads=1, mpi=0)

    # ------------------------------------------------------------------ steps
    def _masks(self):
        """``{key: mask}`` of the input set, in set order (clones)."""
        return byKey(self.inputMasks.get().iterItems(orderBy="id"))

    def _insertAllSteps(self):
        steps = [self._insertFunctionStep(self.membranesStep, key, prerequisites=[])
                 for key in self._masks()]
        self._insertFunctionStep(self.createOutputStep, prerequisites=steps)

    def membranesStep(self, key):
        mask = self._masks()[key]
        args = ["membranes", os.path.abspath(mask.getFileName()), "--out",
                self._getExtraPath(key), "--voxel-size", mask.getSamplingRate(),
                "--threads", self.numberOfThreads.get()]
        if self.threshold.get() > 0:
            args += ["--threshold", self.threshold.get()]
        tilt = tiltRange(self.inputMasks.get()) if self.useTiltRange else None
        if tilt is not None:
            args += ["--tilt-range", *tilt]
        runEngine(self, f"membranes_{key}", args)

    def createOutputStep(self):
        instances = self._newMaskSet("instances", self.inputMasks.get())
        refined = self._newMaskSet("refined", self.inputMasks.get())
        for key, mask in self._masks().items():
            outputs = engineRecord(self, f"membranes_{key}")["outputs"]
            instances.append(derivedMask(mask, outputs["instances"]))
            refined.append(derivedMask(mask, outputs["mask"]))
        outputs = {OUT_INSTANCES: instances, OUT_REFINED: refined}
        self._defineOutputs(**outputs)
        for out in outputs.values():
            self._defineSourceRelation(self.inputMasks, out)

    # ------------------------------------------------------------------- info
    def _validate(self):
        errors = self._inputSetProblems("inputMasks", "Membrane segmentations",
                                        SetOfTomoMasks, excluded=())
        if self.threshold.get() < 0:
            errors.append(f"Threshold must be 0 (the engine's default) or positive, got "
                          f"{self.threshold.get()}.")
        return errors + self._engineProblems()

    def _records(self):
        return {k: r for k in self._masks()
                if (r := engineRecord(self, f"membranes_{k}")) is not None}

    def _summary(self):
        if not self.hasAttribute(OUT_INSTANCES):
            return ["Not finished yet: no membranes."]
        lines = []
        for key, record in self._records().items():
            info = record["info"]
            lines.append(f"{key}: {info['instances']} membrane(s) ({info['closed']} closed, "
                         f"{info['sheets']} sheet(s)), thickness "
                         f"{info['thickness_voxels']:.2f} voxels; table "
                         f"{os.path.abspath(record['outputs']['csv'])}")
        return lines

    def _methods(self):
        if not self.hasAttribute(OUT_INSTANCES):
            return []
        return ["Membrane segmentations were split into instances by 3D region merging and "
                "each membrane fitted with an ellipsoid, a Gaussian-process implicit surface "
                "with thin-plate kernels or an open height field, chosen by fit residual, with "
                "cryovis membranes [Zhou2023]."]

    def _citations(self):
        return ["Zhou2023"]
