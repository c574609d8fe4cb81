"""cryovis - render: segmentation-aware volume renderings (PNG, turntable movie)."""

import os

from pwem.protocols import EMProtocol
from pyworkflow.protocol.constants import STEPS_PARALLEL
from pyworkflow.protocol.params import (
    LEVEL_ADVANCED,
    BooleanParam,
    IntParam,
    PointerParam,
    StringParam,
)
from tomo.objects import SetOfTomoMasks
from tomo.protocols.protocol_base import ProtTomoBase

from .base import CryovisBase, addTomogramsParam
from .engine import engineRecord, runEngine


class ProtCryovisRender(CryovisBase, EMProtocol, ProtTomoBase):
    """Render tomograms with their soft segmentations (Nano-Ötzi style: class colours
    modulated by the low-passed tomogram, ambient occlusion, soft shadows, bloom), or as
    plain direct volume rendering when no probability maps are given. Writes a PNG per
    tomogram and optionally a turntable movie; both are listed in the summary and shown by
    the protocol's viewer."""

    _label = "cryovis - render"
    stepsExecutionMode = STEPS_PARALLEL

    def _defineParams(self, form):
        form.addSection(label="Input")
        addTomogramsParam(form)
        form.addParam("inputMasks", PointerParam, pointerClass="SetOfTomoMasks",
                      allowsNull=True, label="Probability maps (optional)",
                      help="Soft class maps of the same tomograms (e.g. the *probabilities* "
                           "of cryovis - segment), matched by tomogram id. Empty: plain "
                           "direct volume rendering of the tomogram.")
        form.addParam("imageSize", StringParam, default="960x540", label="Image size (WxH)")
        form.addParam("turntable", BooleanParam, default=False, label="Turntable movie",
                      help="Also write a full-turn movie (MP4) per tomogram.")
        form.addParam("frames", IntParam, default=36, condition="turntable",
                      expertLevel=LEVEL_ADVANCED, label="Movie frames")
        form.addParallelSection(threads=3, mpi=0)

    # ------------------------------------------------------------------ steps
    def _insertAllSteps(self):
        for key in self._tomograms():
            self._insertFunctionStep(self.renderStep, key, prerequisites=[])

    def imagePath(self, key):
        """The PNG of tomogram ``key``."""
        return self._getExtraPath(f"{key}.png")

    def moviePath(self, key):
        """The turntable movie of tomogram ``key``."""
        return self._getExtraPath(f"{key}_turntable.mp4")

    def _masksByTsId(self):
        masks = self.inputMasks.get()
        if masks is None:
            return {}
        return {m.getTsId(): m.getFileName() for m in masks.iterItems()}

    def renderStep(self, key):
        tomo = self._tomograms()[key]
        args = ["render", os.path.abspath(tomo.getFileName()), "--out", self.imagePath(key),
                "--size", self.imageSize.get(), "--threads", 1]
        classes = self._masksByTsId().get(tomo.getTsId())
        if classes:
            args += ["--classes", os.path.abspath(classes)]
        else:
            args += ["--mode", "dvr"]
        if self.turntable:
            args += ["--turntable", self.moviePath(key), "--frames", self.frames.get()]
        runEngine(self, f"render_{key}", args)

    def renderedFiles(self):
        """``[(tomogram key, PNG, movie or None)]`` of the tomograms rendered so far."""
        done = []
        for key in self._tomograms():
            if engineRecord(self, f"render_{key}") is not None:
                movie = self.moviePath(key)
                done.append((key, self.imagePath(key), movie if os.path.exists(movie) else None))
        return done

    # ------------------------------------------------------------------- info
    def _validate(self):
        errors = self._inputSetProblems()
        if not errors and self.inputMasks.get() is not None:
            errors += self._inputSetProblems("inputMasks", "Probability maps", SetOfTomoMasks,
                                             excluded=())
            if not errors:
                have = self._masksByTsId()
                missing = [t.getTsId() for t in self._tomograms().values()
                           if t.getTsId() not in have]
                if missing:
                    errors.append(f"Probability maps: none for tomogram(s) "
                                  f"{', '.join(missing[:5])}.")
        parts = self.imageSize.get().lower().split("x")
        if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
            errors.append(f"Image size must be WIDTHxHEIGHT in pixels, got "
                          f"'{self.imageSize.get()}'.")
        if self.turntable and self.frames.get() < 2:
            errors.append("Movie frames: at least 2.")
        return errors + self._engineProblems()

    def _summary(self):
        files = self.renderedFiles() if self.getInputTomograms() is not None else []
        if not files:
            return ["Nothing rendered yet."]
        how = ("with the probability maps" if self.inputMasks.get() is not None
               else "as plain direct volume rendering")
        lines = [f"{len(files)} tomograms rendered {how} ({self.imageSize.get()} px):"]
        for _key, png, movie in files:
            lines.append(os.path.abspath(png))
            if movie:
                lines.append(os.path.abspath(movie))
        return lines

    def getInputTomograms(self):
        """The input set (None when unset)."""
        return self.inputTomograms.get()

    def _methods(self):
        files = self.renderedFiles() if self.getInputTomograms() is not None else []
        if not files:
            return []
        return [f"{len(files)} tomograms were rendered with cryovis' segmentation-aware "
                "volume renderer (soft class maps modulated by the low-passed data, ambient "
                "occlusion, soft shadows and bloom) [Nguyen2021]."]

    def _citations(self):
        return ["Nguyen2021"]

