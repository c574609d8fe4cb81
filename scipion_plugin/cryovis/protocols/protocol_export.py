"""cryovis - export coordinates: a SetOfCoordinates3D as RELION 5, RELION 4 or Dynamo files."""

import os

import starfile
from pwem.protocols import EMProtocol
from pyworkflow.protocol.params import EnumParam, PointerParam
from tomo.objects import SetOfCoordinates3D
from tomo.protocols.protocol_base import ProtTomoBase

from formats import write_particles

from ..constants import EXPORT_FORMATS
from ..convert import tableFromCoordinates, tomogramsTable
from .base import CryovisBase, tomogramsOfCoordinates, tomoKey
from .engine import engineRecord, runEngine

FORMAT_LABELS = list(EXPORT_FORMATS)
OUTPUT_FILES = {"relion5": "particles.star", "relion4": "particles.star",
                "dynamo": "particles.tbl"}
# The formats whose writer takes the tomograms' geometry (RELION 5 centred Å coordinates,
# RELION 4 tilt-series pixels); Dynamo's table is in the tomograms' own voxels and names
# them in the particles.doc index it writes beside the table.
WITH_TOMOGRAMS = ("relion5", "relion4")


class ProtCryovisExport(CryovisBase, EMProtocol, ProtTomoBase):
    """Export 3D coordinates with ``cryovis convert``: RELION 5 (particles.star with
    tomograms.star), RELION 4 (particles.star) or Dynamo (particles.tbl), with classes,
    scores and orientations. The files are in the protocol's extra folder."""

    _label = "cryovis - export coordinates"

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputCoordinates", PointerParam, pointerClass="SetOfCoordinates3D",
                      label="Input 3D coordinates", important=True,
                      help="Coordinates on tomograms (from any picking protocol).")
        form.addParam("outputFormat", EnumParam, choices=FORMAT_LABELS, default=0,
                      label="Export to",
                      help="RELION 5: centred Å coordinates with tomograms.star; RELION 4: "
                           "unbinned tilt-series pixels; Dynamo: a .tbl table.")

    # ------------------------------------------------------------------ steps
    def _insertAllSteps(self):
        written = self._insertFunctionStep(self.writeInputStep)
        self._insertFunctionStep(self.convertStep, prerequisites=[written])

    def _format(self):
        return EXPORT_FORMATS[FORMAT_LABELS[self.outputFormat.get()]]

    def outputPath(self):
        """The exported particle file."""
        return self._getExtraPath(OUTPUT_FILES[self._format()])

    def tomogramsPath(self):
        """The RELION tomograms.star written beside the particles (RELION formats only)."""
        return self._getExtraPath("tomograms.star")

    def writtenFiles(self):
        """The files of the export: the particles, then what the format keeps beside them."""
        particles = self.outputPath()
        if self._format() in WITH_TOMOGRAMS:
            return [particles, self.tomogramsPath()]
        stem = os.path.splitext(particles)[0]
        return [particles] + [p for p in (f"{stem}.doc", f"{stem}_classes.doc")
                              if os.path.exists(p)]

    def _tomogramsOfCoordinates(self):
        return tomogramsOfCoordinates(self.inputCoordinates.get())

    def writeInputStep(self):
        # The engine reads our plain CSV interchange; tomograms.star gives RELION its geometry.
        table = tableFromCoordinates(self.inputCoordinates.get())
        write_particles(self._getExtraPath("coordinates.csv"), table, format="csv",
                        overwrite=True)
        if self._format() in WITH_TOMOGRAMS:
            starfile.write({"global": tomogramsTable(self._tomogramsOfCoordinates())},
                           self.tomogramsPath(), overwrite=True)

    def convertStep(self):
        args = ["convert", self._getExtraPath("coordinates.csv"), self.outputPath(),
                "--to", self._format()]
        if self._format() in WITH_TOMOGRAMS:
            args += ["--tomograms", self.tomogramsPath()]
        runEngine(self, "export", args)

    # ------------------------------------------------------------------- info
    def _validate(self):
        errors = self._inputSetProblems("inputCoordinates", "Input 3D coordinates",
                                        SetOfCoordinates3D, excluded=())
        if not errors:
            missing = [t for t in self.inputCoordinates.get().getTSIds()
                       if t not in self._tomogramsOfCoordinates()]
            if missing:
                errors.append(f"Input 3D coordinates: their tomograms do not include "
                              f"{', '.join(map(str, missing[:5]))}.")
            bad = [t for t in self._tomogramsOfCoordinates().values() if tomoKey(t) != t.getTsId()]
            if bad:
                errors.append(f"Tomogram id {bad[0].getTsId()!r} has characters RELION "
                              "cannot carry in rlnTomoName.")
        return errors + self._engineProblems()

    def _summary(self):
        record = engineRecord(self, "export")
        if record is None:
            return ["Not finished yet."]
        return [f"{record['particles']} particles of {record['tomograms']} tomograms "
                f"exported as {FORMAT_LABELS[self.outputFormat.get()]}:",
                *map(os.path.abspath, self.writtenFiles())]

    def _methods(self):
        record = engineRecord(self, "export")
        if record is None:
            return []
        return [f"{record['particles']} coordinates were exported to "
                f"{FORMAT_LABELS[self.outputFormat.get()]} with cryovis convert."]
