"""cryovis - extract subtomograms: a SetOfCoordinates3D -> SetOfSubTomograms (RELION 3.1 STAR)."""

import os

import numpy as np
import starfile
from pwem.objects import Transform
from pwem.protocols import EMProtocol
from pyworkflow.protocol.constants import STEPS_PARALLEL
from pyworkflow.protocol.params import (
    LEVEL_ADVANCED,
    BooleanParam,
    EnumParam,
    IntParam,
    PointerParam,
)
from tomo.objects import SetOfCoordinates3D, SetOfSubTomograms, SubTomogram, TomoAcquisition
from tomo.protocols.protocol_base import ProtTomoBase

from formats import read_particles, write_particles

from ..constants import OUT_SUBTOMOGRAMS
from ..convert import coordinatesFromTable, tableFromCoordinates
from .base import CryovisBase, byKey, tiltRange, tomogramsOfCoordinates
from .engine import engineRecord, runEngine

EDGES = ["pad", "drop"]
EDGE_LABELS = ["pad with the box's mean", "drop the pick"]
TABLE = "particles.star"  # what `cryovis extract --format relion3` writes in its folder


class ProtCryovisExtract(CryovisBase, EMProtocol, ProtTomoBase):
    """Cut a box^3 subtomogram around every 3D coordinate with ``cryovis extract``: MRC
    files and a RELION 3.1 subtomogram STAR per tomogram (the sub-voxel remainder of each
    position as rlnOrigin*Angst), the coordinates' orientations as the subtomograms'
    transforms, and with a known tilt range the missing-wedge weight as rlnCtfImage."""

    _label = "cryovis - extract subtomograms"
    _possibleOutputs = {OUT_SUBTOMOGRAMS: SetOfSubTomograms}
    stepsExecutionMode = STEPS_PARALLEL

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputCoordinates", PointerParam, pointerClass="SetOfCoordinates3D",
                      label="Input 3D coordinates", important=True,
                      help="Coordinates on tomograms (from any picking protocol); their "
                           "orientations become the subtomograms' transforms.")
        form.addParam("boxSize", IntParam, default=0, label="Box size (voxels)",
                      help="Edge of the cubic subtomogram, even (RELION needs an even box). "
                           "0: the coordinates' box size, rounded up to even.")
        form.addParam("invert", BooleanParam, default=True, label="Invert contrast",
                      help="Dark density (raw cryo-ET) becomes bright, as RELION and most "
                           "averaging tools expect.")
        form.addParam("normalise", BooleanParam, default=True, label="Normalise",
                      help="z-score each subtomogram (median and 1.4826 x MAD).")
        form.addParam("useTiltRange", BooleanParam, default=True, label="Missing-wedge weight",
                      help="Write the missing-wedge weight (rlnCtfImage) from the tomograms' "
                           "acquisition tilt range, when they have one.")
        form.addParam("edge", EnumParam, choices=EDGE_LABELS, default=0,
                      expertLevel=LEVEL_ADVANCED, label="Boxes crossing the border",
                      help="pad: the missing voxels get the mean of the box's inside voxels; "
                           "drop: such picks are not extracted (counted in the summary).")
        form.addParallelSection(threads=1, mpi=0)

    # ------------------------------------------------------------------ steps
    def _insertAllSteps(self):
        steps = [self._insertFunctionStep(self.extractStep, key, prerequisites=[])
                 for key in self._keys()]
        self._insertFunctionStep(self.createOutputStep, prerequisites=steps)

    def _tomogramsByKey(self):
        return byKey(tomogramsOfCoordinates(self.inputCoordinates.get()).values())

    def _keys(self):
        return list(self._tomogramsByKey())

    def _box(self):
        if self.boxSize.get() > 0:
            return self.boxSize.get()
        box = int(self.inputCoordinates.get().getBoxSize() or 0)
        return box + box % 2

    def _folder(self, key):
        return self._getExtraPath(key)

    def extractStep(self, key):
        tomo = self._tomogramsByKey()[key]
        table = tableFromCoordinates(self.inputCoordinates.get())
        table = table[table["tomo_name"] == tomo.getTsId()].reset_index(drop=True)
        picks = self._getExtraPath(f"{key}_coordinates.csv")
        write_particles(picks, table, format="csv", overwrite=True)
        args = ["extract", os.path.abspath(tomo.getFileName()), picks, "--box", self._box(),
                "--out", self._folder(key), "--format", "relion3",
                "--voxel-size", tomo.getSamplingRate(), "--edge", EDGES[self.edge.get()]]
        if self.invert:
            args.append("--invert")
        if self.normalise:
            args.append("--normalise")
        tilt = tiltRange(tomo) if self.useTiltRange else None
        if tilt is not None:
            args += ["--tilt-range", *tilt]
        runEngine(self, f"extract_{key}", args)

    def createOutputStep(self):
        coordSet = self.inputCoordinates.get()
        subtomos = self._createSetOfSubTomograms()
        subtomos.setSamplingRate(coordSet.getSamplingRate())
        subtomos.setCoordinates3D(self.inputCoordinates)
        for key, tomo in self._tomogramsByKey().items():
            record = engineRecord(self, f"extract_{key}")
            for subtomo in self._subtomograms(tomo, record):
                subtomos.append(subtomo)
        self._defineOutputs(**{OUT_SUBTOMOGRAMS: subtomos})
        self._defineSourceRelation(self.inputCoordinates, subtomos)

    def _subtomograms(self, tomo, record):
        """SubTomogram objects of one tomogram's extraction, in its STAR's order."""
        star = record["table"]
        rows = starfile.read(star, always_dict=True)["particles"]
        # the engine's reader applies the origin shifts: positions are the picks' own
        table = read_particles(star, format="relion31")
        folder = os.path.dirname(star)
        coords = coordinatesFromTable(table.assign(tomo_name=tomo.getTsId()), tomo)
        for (_, row), coord in zip(rows.iterrows(), coords):
            subtomo = SubTomogram()
            subtomo.setFileName(os.path.join(folder, row["rlnImageName"]))
            subtomo.setSamplingRate(record["voxel_size_angst"])
            subtomo.setCoordinate3D(coord.clone())
            # tomo filters a set's subtomograms of a tomogram by _volName == its tsId
            subtomo.setVolName(tomo.getTsId())
            subtomo.setVolId(tomo.getObjId())
            subtomo.setTransform(Transform(np.array(coord.getMatrix())))
            subtomo.setAcquisition(tomo.getAcquisition().clone() if tomo.getAcquisition()
                                   else TomoAcquisition())
            subtomo.setClassId(int(row.get("rlnClassNumber", 0)))
            yield subtomo

    # ------------------------------------------------------------------- info
    def _validate(self):
        errors = self._inputSetProblems("inputCoordinates", "Input 3D coordinates",
                                        SetOfCoordinates3D, excluded=())
        if errors:
            return errors + self._engineProblems()
        box = self._box()
        if box < 2:
            errors.append("Box size: the coordinates have none; give one (even, voxels).")
        elif box % 2:
            errors.append(f"Box size {box}: RELION needs an even box (try {box + 1}).")
        missing = [t for t in self.inputCoordinates.get().getTSIds()
                   if t not in tomogramsOfCoordinates(self.inputCoordinates.get())]
        if missing:
            errors.append(f"Input 3D coordinates: their tomograms do not include "
                          f"{', '.join(map(str, missing[:5]))}.")
        return errors + self._engineProblems()

    def _records(self):
        return [r for r in (engineRecord(self, f"extract_{k}") for k in self._keys()) if r]

    def _summary(self):
        if not self.hasAttribute(OUT_SUBTOMOGRAMS):
            return ["Not finished yet: no subtomograms."]
        records = self._records()
        extracted = sum(r["n_extracted"] for r in records)
        dropped = sum(r["n_dropped"] for r in records)
        padded = sum(r["n_edge"] for r in records if r["edge"] == "pad")
        wedge = sum(1 for r in records if r["tilt_range_deg"])
        return [f"{extracted} subtomograms of {records[0]['box']}^3 voxels at "
                f"{records[0]['voxel_size_angst']:g} Å/voxel from {len(records)} tomograms "
                f"({dropped} picks dropped, {padded} boxes padded at the border; "
                f"missing-wedge weight for {wedge} tomograms).",
                *[os.path.abspath(r["table"]) for r in records]]

    def _methods(self):
        records = self._records()
        if not self.hasAttribute(OUT_SUBTOMOGRAMS) or not records:
            return []
        return [f"Subtomograms of {records[0]['box']}^3 voxels were cut at the particle "
                "positions with cryovis extract (whole-voxel crops, sub-voxel remainders as "
                "RELION origin offsets) and written as a RELION 3.1 subtomogram set "
                "[Bharat2016]."]

    def _citations(self):
        return ["Bharat2016"]
