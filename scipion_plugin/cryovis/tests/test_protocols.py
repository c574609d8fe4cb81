"""Every cryovis protocol in a real pyworkflow project, on tomograms the engine simulates.

Needs the engine program (``CRYOVIS_PROGRAM`` or an installed ``cryovis``),
``CRYOVIS_TEMPLATES``, a folder of the simulator's particle maps ``<class>.mrc`` at 10 Å (the
true templates), and ``CRYOVIS_WORKFLOW``, the JSON saved in ``scipion_plugin/workflows/``:
the suite starts by running that workflow (import -> segment -> membranes -> pick -> export,
every cryovis protocol with its defaults), and the segment, membranes, pick and export checks
are of its runs.
Run: ``python -m pytest --pyargs cryovis.tests`` in Scipion's Python.
"""

import filecmp
import json
import os
import shutil
import subprocess

import numpy as np
import pandas as pd
import starfile
from pwem import Domain
from pyworkflow.object import Pointer
from pyworkflow.protocol.constants import MODE_RESUME, STATUS_FAILED, STATUS_FINISHED
from pyworkflow.tests import BaseTest, setupTestProject
from tomo.constants import BOTTOM_LEFT_CORNER
from tomo.objects import SetOfCoordinates3D, SetOfSubTomograms, SetOfTomoMasks
from tomo.protocols import ProtImportTomograms, ProtImportTomomasks

from cryovis import Plugin
from cryovis.constants import (
    COORD_CLASS_ATTR,
    CRYOVIS_PROGRAM,
    OUT_COORDINATES,
    OUT_INSTANCES,
    OUT_MASKS,
    OUT_MODEL,
    OUT_PROBABILITIES,
    OUT_REFINED,
    OUT_SUBTOMOGRAMS,
)
from cryovis.convert import engineRotation, scipionMatrix
from cryovis.objects import CryovisModel
from cryovis.protocols import (
    ProtCryovisExport,
    ProtCryovisExtract,
    ProtCryovisMembranes,
    ProtCryovisPick,
    ProtCryovisRender,
    ProtCryovisSegment,
    ProtCryovisTrain,
)
from cryovis.protocols.engine import engineRecord
from cryovis.viewers import CryovisRenderViewer
from formats import Volume, orientations, read_particles, read_volume, write_volume

Domain.getPluginModule("cryovis")  # defines the plugin's variables, as Scipion does on start

SIZE = (96, 96, 48)          # x, y, z voxels: small enough for a suite of seconds per step
VOXEL = 10.0                 # Å
NAMES = ["tomo_000", "tomo_001"]
DIAMETER = 80.0              # Å: the simulator's globular particles at 10 Å/voxel
DEFAULT_DIAMETER = 120.0     # Å: the pick protocol's default (sets the box size)
BLOB = 1                     # the pick protocol's `method` choices: the blob baseline,
TEMPLATE = 2                 # template matching
MATCH_VOXELS = 3.0           # a pick "finds" a particle when its centre is this close
# Template matching's particle: the suite's tomo_000 holds 26 of the simulator's barrels. Its
# four heptameric rings are D7: the upper two are the lower two turned over about y (the map
# turned 180° about y correlates 0.99998 with itself), so a D7 grid covers every distinct
# orientation and an orientation is right modulo that group.
TEMPLATE_CLASS = "barrel"
TEMPLATE_SYMMETRY = "D7"
STROKES = 300                # painted voxels per class
# A small network and a few steps: the test is of the protocols, not of the training.
TRAIN_STEPS = 5
TINY_TRAINING = json.dumps({"network": {"base_channels": 4, "depth": 2,
                                        "deep_supervision": False},
                            "patch_size": [32, 32, 32], "precision": "fp32"})


PROTOCOLS = (ProtCryovisSegment, ProtCryovisTrain, ProtCryovisMembranes, ProtCryovisPick,
             ProtCryovisExtract, ProtCryovisExport, ProtCryovisRender)


def engine(*args, check=True):
    """Run the engine program; returns the completed process."""
    proc = subprocess.run([Plugin.getProgram(), *map(str, args)], capture_output=True,
                          text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"cryovis {' '.join(map(str, args))} exited "
                             f"{proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def simulate(out, seed):
    engine("simulate", "--out", out, "--n", len(NAMES), "--size", "x".join(map(str, SIZE)),
           "--seed", seed, "--voxel-size", VOXEL, "--crowding", 0.1)


def positions(coords, name=None):
    """``[(tomoId, x, y, z, score, class, its tomogram's tsId)]`` in set order (positions in
    BOTTOM_LEFT_CORNER voxels). Read while iterating: the set reuses one Coordinate3D object.
    """
    return [(c.getTomoId(), *c.getPosition(BOTTOM_LEFT_CORNER), c.getScore(),
             getattr(c, COORD_CLASS_ATTR).get(), c.getVolume().getTsId())
            for c in coords.iterCoordinates(orderBy="id") if name in (None, c.getTomoId())]


def symmetricAngle(a, b):
    """Rotation angles (degrees) between orientations ``a`` and ``b`` (N, 3, 3), each the
    least over the barrel's point group: C7 about z and the 2-folds about y and its turns."""
    from scipy.spatial.transform import Rotation

    cyclic = Rotation.from_euler("z", 2 * np.pi * np.arange(7)[:, None] / 7).as_matrix()
    group = np.concatenate([cyclic, cyclic @ np.diag([-1.0, 1.0, -1.0])])
    traces = np.einsum("nji,njk,gki->ng", a, b, group)  # trace(a^T b g)
    return np.degrees(np.arccos(np.clip((traces.max(axis=1) - 1) / 2, -1.0, 1.0)))


def dice(a, b):
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return 2.0 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


class TestCryovisProtocols(BaseTest):
    @classmethod
    def setUpClass(cls):
        if Plugin.getProgram() is None:
            raise RuntimeError(Plugin.programProblem())
        path = os.environ.get("CRYOVIS_WORKFLOW")
        if not (path and os.path.isfile(path)):
            raise RuntimeError(f"CRYOVIS_WORKFLOW={path!r}: not the workflow JSON file")
        setupTestProject(cls)
        cls.data = os.path.abspath(cls.getOutputPath("simulated"))
        simulate(cls.data, seed=11)
        cls.workflow = cls.runWorkflow(path)
        by_class = {type(p).__name__: p for p in cls.workflow}
        cls.tomograms = by_class["ProtImportTomograms"].Tomograms
        cls.segment = by_class["ProtCryovisSegment"]
        cls.membranes = by_class["ProtCryovisMembranes"]
        cls.pick = by_class["ProtCryovisPick"]
        cls.export = by_class["ProtCryovisExport"]
        cls.pickBlob = cls.launchProtocol(cls.newProtocol(
            ProtCryovisPick, inputTomograms=cls.tomograms, method=BLOB, diameter=DIAMETER))

    @classmethod
    def runWorkflow(cls, path):
        """Load the workflow JSON into the project, point its import at the data, run it."""
        with open(path) as fh:
            cls.workflowLabels = [p["object.label"] for p in json.load(fh)]
        cls.proj.loadProtocols(path)
        loaded = sorted(cls.proj.getRuns(), key=lambda p: p.getObjId())
        importer = loaded[0]
        importer.filesPath.set(cls.data)
        cls.proj.saveProtocol(importer)
        for prot in loaded:
            cls.launchProtocol(cls.proj.getProtocol(prot.getObjId()))
        return [cls.proj.getProtocol(p.getObjId()) for p in loaded]

    @classmethod
    def importTomograms(cls, path, pattern):
        prot = cls.launchProtocol(cls.newProtocol(
            ProtImportTomograms, filesPath=path, filesPattern=pattern, samplingRate=VOXEL))
        return prot.Tomograms

    # ------------------------------------------------------------ segment
    def test_segment_outputs(self):
        masks = getattr(self.segment, OUT_MASKS)
        probs = getattr(self.segment, OUT_PROBABILITIES)
        for out in (masks, probs):
            self.assertIsInstance(out, SetOfTomoMasks)
            self.assertSetSize(out, len(NAMES))
            self.assertAlmostEqual(out.getSamplingRate(), VOXEL)
            self.assertEqual(sorted(m.getTsId() for m in out), NAMES)
        for mask, prob in zip(masks, probs):
            self.assertEqual(mask.getDimensions(), SIZE)
            labels = read_volume(mask.getFileName())
            p = np.asarray(read_volume(prob.getFileName()).data)
            self.assertAlmostEqual(labels.voxel_size, VOXEL, places=3)
            self.assertEqual(set(np.unique(labels.data)) - {0, 1}, set())
            self.assertGreaterEqual(p.min(), 0.0)
            self.assertLessEqual(p.max(), 1.0)
            np.testing.assert_array_equal(np.asarray(labels.data) > 0, p > 0.5)
            truth = read_volume(os.path.join(self.data, f"{mask.getTsId()}_membranes.mrc"))
            self.assertGreater(dice(labels.data, truth.data), 0.3, mask.getTsId())
        summary = "\n".join(self.segment.summary())
        self.assertIn("2 tomograms segmented", summary)
        self.assertTrue(self.segment.citations())
        self.assertTrue(self.segment.methods())

    # ---------------------------------------------------------- membranes
    def test_membranes_of_the_segmentation(self):
        probs = getattr(self.segment, OUT_PROBABILITIES)
        prot = self.membranes  # the workflow's, on the segmentation's probability maps
        self.assertEqual(prot.inputMasks.get().getObjId(), probs.getObjId())
        instances, refined = getattr(prot, OUT_INSTANCES), getattr(prot, OUT_REFINED)
        for out in (instances, refined):
            self.assertIsInstance(out, SetOfTomoMasks)
            self.assertSetSize(out, len(NAMES))
            self.assertAlmostEqual(out.getSamplingRate(), VOXEL)
            self.assertEqual(sorted(m.getTsId() for m in out), NAMES)
        found = 0
        for inst, prob in zip(instances, probs):
            labels = np.asarray(read_volume(inst.getFileName()).data)
            self.assertEqual(labels.shape, np.asarray(read_volume(prob.getFileName()).data).shape)
            record = engineRecord(prot, f"membranes_{inst.getTsId()}")
            self.assertEqual(int(labels.max()), record["info"]["instances"])
            found += record["info"]["instances"]
            self.assertTrue(os.path.isfile(record["outputs"]["csv"]))
        self.assertGreater(found, 0)  # the simulator puts vesicles in every tomogram
        summary = "\n".join(prot.summary())
        self.assertIn("membrane(s)", summary)
        self.assertTrue(prot.methods())

    # ------------------------------------------------------ sparse labels
    def paintStrokes(self, name):
        """Strokes on tomogram ``name`` from its true membranes, as a user imports them
        (tomo's 'import tomomasks', matched by tsId): STROKES voxels of background (1) and
        of membrane (2) drawn at random, the rest 0 (unlabelled)."""
        membrane = np.asarray(read_volume(os.path.join(self.data,
                                                       f"{name}_membranes.mrc")).data) > 0
        rng = np.random.default_rng(3)
        strokes = np.zeros(membrane.shape, np.uint8)
        for value, where in ((1, ~membrane), (2, membrane)):
            strokes.flat[rng.choice(np.flatnonzero(where), STROKES, replace=False)] = value
        folder = os.path.abspath(self.getOutputPath("strokes"))
        os.makedirs(folder)
        write_volume(os.path.join(folder, f"{name}.mrc"), Volume(strokes, voxel_size=VOXEL))
        prot = self.launchProtocol(self.newProtocol(
            ProtImportTomomasks, filesPath=folder, filesPattern="*.mrc",
            inputTomos=self.tomograms))
        return prot.tomomasks

    def test_train_from_strokes_then_segment(self):
        painted = NAMES[0]  # the other tomogram has no strokes: segmented, not trained on
        strokes = self.paintStrokes(painted)
        train = self.newProtocol(ProtCryovisTrain, inputTomograms=self.tomograms,
                                 inputStrokes=strokes, maxSteps=TRAIN_STEPS,
                                 trainingOptions=TINY_TRAINING)
        self.assertEqual(train.validate(), [])
        self.assertEqual(train.warnings(), [f"No strokes for {NAMES[1]}: not used for "
                                            "training."])
        self.launchProtocol(train)
        train = self.proj.getProtocol(train.getObjId())  # the model as the project stored it
        model = getattr(train, OUT_MODEL)
        self.assertIsInstance(model, CryovisModel)
        self.assertEqual(model.getClasses(), ["background", "membrane"])
        self.assertAlmostEqual(model.getVoxelSize(), VOXEL)
        self.assertTrue(os.path.isfile(model.getPath()) and os.path.isfile(model.getCardPath()))
        self.assertEqual(engineRecord(train, "train")["steps"], TRAIN_STEPS)
        self.assertIsNotNone(engineRecord(train, f"pseudolabel_{painted}"))
        self.assertIsNone(engineRecord(train, f"pseudolabel_{NAMES[1]}"))
        self.assertIn("classes background, membrane", "\n".join(train.summary()))
        self.assertTrue(train.methods())

        segment = self.launchProtocol(self.newProtocol(
            ProtCryovisSegment, inputTomograms=self.tomograms, inputModel=model))
        labels = getattr(segment, OUT_MASKS)
        maps = {c: getattr(segment, f"{OUT_PROBABILITIES}_{c}") for c in model.getClasses()}
        for out in (labels, *maps.values()):
            self.assertIsInstance(out, SetOfTomoMasks)
            self.assertSetSize(out, len(NAMES))
            self.assertAlmostEqual(out.getSamplingRate(), VOXEL)
            self.assertEqual([m.getTsId() for m in out], NAMES)
            for mask in out:
                self.assertEqual(mask.getDimensions(), SIZE)
        files = {c: {m.getTsId(): m.getFileName() for m in out} for c, out in maps.items()}
        for mask in labels:
            hard = np.asarray(read_volume(mask.getFileName()).data)
            soft = np.stack([np.asarray(read_volume(files[c][mask.getTsId()]).data)
                             for c in model.getClasses()])
            np.testing.assert_allclose(soft.sum(axis=0), 1.0, atol=1e-4)
            # the most probable class, numbered as painted (1 background, 2 membrane)
            np.testing.assert_array_equal(hard, soft.argmax(axis=0) + 1)
        summary = "\n".join(segment.summary())
        self.assertIn(f"segmented with {model.getPath()}; classes: background, membrane",
                      summary)
        bad = self.newProtocol(ProtCryovisTrain, inputTomograms=self.tomograms,
                               inputStrokes=strokes, classNames="membrane").validate()
        self.assertTrue(any("at least two" in e for e in bad), bad)

    # --------------------------------------------------------------- pick
    @staticmethod
    def enginePicks(prot, name):
        return read_particles(prot._getExtraPath(f"{name}_picks.csv"), format="csv")

    def checkPickOutputs(self, prot, diameter, label):
        coords = getattr(prot, OUT_COORDINATES)
        self.assertIsInstance(coords, SetOfCoordinates3D)
        self.assertAlmostEqual(coords.getSamplingRate(), VOXEL)
        self.assertEqual(coords.getBoxSize(), int(round(1.5 * diameter / VOXEL)))
        engine_total = 0
        for name in NAMES:
            picks = self.enginePicks(prot, name)
            self.assertGreater(len(picks), 0, name)
            engine_total += len(picks)
            mine = positions(coords, name)
            self.assertEqual(len(mine), len(picks))
            np.testing.assert_allclose([m[1:4] for m in mine],
                                       picks[["x", "y", "z"]].to_numpy(), atol=1e-9)
            np.testing.assert_allclose([m[4] for m in mine], picks["score"])
            self.assertEqual([m[5] for m in mine], list(picks["class"]))
            self.assertEqual({m[6] for m in mine}, {name})
        self.assertSetSize(coords, engine_total)
        summary = "\n".join(prot.summary())
        self.assertIn(f"{engine_total} particles picked in 2 tomograms ({label}", summary)
        self.assertTrue(prot.methods())

    def test_pick_outputs_learned(self):
        self.checkPickOutputs(self.pick, DEFAULT_DIAMETER, "learned")
        classes = {m[5] for m in positions(getattr(self.pick, OUT_COORDINATES))}
        card = engineRecord(self.pick, f"pick_{NAMES[0]}")["class_numbers"]
        self.assertTrue(classes and classes <= set(card), classes)

    def test_pick_outputs_blob(self):
        self.checkPickOutputs(self.pickBlob, DIAMETER, "blob")
        self.assertEqual({m[5] for m in positions(getattr(self.pickBlob, OUT_COORDINATES))},
                         {"blob"})

    def test_pick_template_on_true_particles(self):
        """Template matching with the true barrel map on the suite's tomograms: the picks sit
        on the simulator's particles, most on its barrels, with their orientations; the
        engine's orientations are the Coordinate3D matrices, and tomo's RELION export
        (reliontomo) writes the same angles."""
        from pwem.protocols import ProtImportVolumes
        from scipy.spatial.transform import Rotation
        from tomo.protocols import ProtExportCoordinates3D
        from tomo.protocols.protocol_export_coords import EXPORT_TO_STAR

        path = os.path.join(os.environ["CRYOVIS_TEMPLATES"], f"{TEMPLATE_CLASS}.mrc")
        self.assertAlmostEqual(read_volume(path).voxel_size, VOXEL, places=3)
        template = self.launchProtocol(self.newProtocol(
            ProtImportVolumes, filesPath=path, samplingRate=VOXEL)).outputVolume
        prot = self.launchProtocol(self.newProtocol(
            ProtCryovisPick, inputTomograms=self.tomograms, method=TEMPLATE,
            inputTemplate=template, angularStep=30.0, symmetry=TEMPLATE_SYMMETRY))
        coords = getattr(prot, OUT_COORDINATES)
        self.assertAlmostEqual(coords.getSamplingRate(), VOXEL)
        self.assertEqual(coords.getBoxSize(), template.getDimensions()[0])
        # the engine names the class after the template's file (Scipion's copy of it)
        stem = os.path.splitext(os.path.basename(prot._templatePath()))[0]
        self.assertIn(TEMPLATE_CLASS, stem)
        total = 0
        for name in NAMES:
            picks = self.enginePicks(prot, name)
            record = engineRecord(prot, f"pick_{name}")
            self.assertEqual((record["angular_step_deg"], record["symmetry"]),
                             (30.0, TEMPLATE_SYMMETRY))
            mine = positions(coords, name)
            self.assertEqual(len(mine), len(picks), name)
            self.assertEqual({m[5] for m in mine}, {stem})
            self.assertEqual({m[6] for m in mine}, {name})
            total += len(picks)
            # the set reuses one Coordinate3D while iterating: copy each matrix
            matrices = [np.array(c.getMatrix()) for c in coords.iterCoordinates(orderBy="id")
                        if c.getTomoId() == name]
            for matrix, rotation in zip(matrices, orientations(picks), strict=True):
                np.testing.assert_allclose(engineRotation(matrix), rotation, rtol=0, atol=1e-12)
        self.assertSetSize(coords, total)

        # Against the simulator's truth, from the Scipion coordinates and matrices. Measured
        # (30° D7 grid): all 25 picks within 3 voxels of a particle, 20 of a barrel (18 of 18
        # in tomo_000, 18 of its 26 barrels; the other 5 sit on cubes of about its size),
        # median distance 0.5 voxels, median orientation error 4.7° (modulo D7).
        anywhere = self.truthMatches(coords)
        barrels = self.truthMatches(coords, TEMPLATE_CLASS)
        near = np.concatenate([d for d, _, _ in anywhere.values()])
        onClass = np.concatenate([d for d, _, _ in barrels.values()])
        self.assertGreaterEqual((near <= MATCH_VOXELS).mean(), 0.9, np.round(near, 1))
        self.assertGreaterEqual((onClass <= MATCH_VOXELS).mean(), 0.7, np.round(onClass, 1))
        self.assertLess(float(np.median(onClass[onClass <= MATCH_VOXELS])), 1.5)
        distances, nearest, truth = barrels[NAMES[0]]
        found = set(nearest[distances <= MATCH_VOXELS])
        self.assertGreaterEqual(len(found), 0.5 * len(truth), f"{len(found)}/{len(truth)}")
        errors = []
        for name, (distances, nearest, truth) in barrels.items():
            hit = distances <= MATCH_VOXELS
            mine = np.array([engineRotation(c.getMatrix())
                             for c in coords.iterCoordinates(orderBy="id")
                             if c.getTomoId() == name])[hit]
            errors += list(symmetricAngle(mine, orientations(truth)[nearest[hit]]))
        self.assertLess(float(np.median(errors)), 12.0, np.round(errors, 1))

        choices = ProtExportCoordinates3D._getExportChoices()
        export = self.launchProtocol(self.newProtocol(
            ProtExportCoordinates3D, inputCoordinates=coords,
            outputFormat=choices.index(EXPORT_TO_STAR)))
        star = starfile.read(export._getExportPath("coords.star"), always_dict=True)
        star = next(v for v in star.values() if "rlnCoordinateX" in v)
        self.assertEqual(len(star), total)
        angles = pd.concat([pd.read_csv(prot._getExtraPath(f"{n}_picks.csv")) for n in NAMES])
        ours = Rotation.from_euler("ZYZ", angles[["rot", "tilt", "psi"]].to_numpy(float),
                                   degrees=True).as_matrix()
        theirs = Rotation.from_euler(
            "ZYZ", star[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(float),
            degrees=True).as_matrix()
        # same order (tomograms in set order, picks by id); compared as rotations: ZYZ Euler
        # triples are not unique
        np.testing.assert_allclose(theirs, ours, atol=1e-5)
        self.assertIn("template matching", "\n".join(prot.summary()))
        self.assertIn(f"30° grid, symmetry {TEMPLATE_SYMMETRY}", "\n".join(prot.methods()))
        missing = self.newProtocol(ProtCryovisPick, inputTomograms=self.tomograms,
                                   method=TEMPLATE)
        self.assertIn("Template: template matching needs a template volume.",
                      missing.validate())

    def truthMatches(self, coords, cls=None):
        """``{tomogram: (distances, nearest, truth)}``: ``truth`` the simulator's particles
        there (of class ``cls``, else all), and for each pick of ``coords`` on it (set order)
        the distance in voxels to the nearest of them and that one's row in ``truth``."""
        out = {}
        for name in NAMES:
            truth = read_particles(os.path.join(self.data, f"{name}_particles.csv"),
                                   format="csv")
            truth = truth[truth["class"] == cls] if cls else truth
            txyz = truth[["x", "y", "z"]].to_numpy(float)
            xyz = np.array([m[1:4] for m in positions(coords, name)]).reshape(-1, 3)
            gaps = np.linalg.norm(xyz[:, None, :] - txyz[None, :, :], axis=2)
            out[name] = (gaps.min(axis=1), gaps.argmin(axis=1), truth.reset_index(drop=True))
        return out

    def checkAgainstGroundTruth(self, prot):
        coords = getattr(prot, OUT_COORDINATES)
        hits = picked = 0
        flipped_hits = 0
        distances = []
        for name, (nearest, _, truth) in self.truthMatches(coords).items():
            txyz = truth[["x", "y", "z"]].to_numpy(float)
            xyz = np.array([m[1:4] for m in positions(coords, name)])
            flipped = xyz * [1, -1, 1] + [0, SIZE[1] - 1, 0]
            flipped_near = np.linalg.norm(flipped[:, None] - txyz[None], axis=2).min(axis=1)
            hits += int((nearest <= MATCH_VOXELS).sum())
            flipped_hits += int((flipped_near <= MATCH_VOXELS).sum())
            picked += len(xyz)
            distances += list(nearest[nearest <= MATCH_VOXELS])
        # Both pickers also fire on membranes, gold and noise (measured with the engine alone
        # on these tomograms: 40% of the learned picker's and 49% of the blob picks within 3
        # voxels of a particle, 3% when y-flipped); what they find must sit on the
        # simulator's particles, not y-flipped and without a half-box or one-voxel shift.
        self.assertGreaterEqual(hits, 0.3 * picked, f"{hits}/{picked}")
        self.assertLess(flipped_hits, 0.5 * hits, "a y-flipped convention would match as well")
        self.assertLess(float(np.median(distances)), 1.5)

    def test_picks_against_ground_truth_learned(self):
        self.checkAgainstGroundTruth(self.pick)

    def test_picks_against_ground_truth_blob(self):
        self.checkAgainstGroundTruth(self.pickBlob)

    def test_citations_are_in_bibtex(self):
        from pyworkflow.utils import parseBibTex

        import cryovis
        from cryovis import bibtex

        entries = parseBibTex(bibtex.__doc__)
        self.assertEqual(sorted(entries), sorted(cryovis._references))
        for cls in PROTOCOLS:
            cites = self.newProtocol(cls)._citations() if hasattr(cls, "_citations") else []
            self.assertTrue(set(cites) <= set(entries), cls.__name__)

    def test_orientation_agrees_with_reliontomo(self):
        """An engine orientation set as the Coordinate3D matrix gives reliontomo's writer the
        same RELION angles as the engine's own RELION writer (``formats``)."""
        from reliontomo.convert.convertBase import getTransformInfoFromCoordOrSubtomo
        from scipy.spatial.transform import Rotation
        from tomo.objects import Coordinate3D

        from formats import make_table, write_particles

        rotations = Rotation.random(6, random_state=1).as_matrix()
        star = os.path.abspath(self.getOutputPath("orientations.star"))
        write_particles(star, make_table(np.zeros((6, 3)), voxel_size=VOXEL, matrices=rotations,
                                         tomo_name="t"),
                        format="relion4", tilt_series_pixel_size=VOXEL, overwrite=True)
        table = starfile.read(star)
        table = table["particles"] if isinstance(table, dict) else table
        ours = table[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(float)
        for rot, angles in zip(rotations, ours):
            coord = Coordinate3D()
            coord.setMatrix(scipionMatrix(rot))
            np.testing.assert_allclose(engineRotation(coord.getMatrix()), rot, atol=1e-12)
            theirs, _ = getTransformInfoFromCoordOrSubtomo(coord, VOXEL)
            # Compared as rotations: ZYZ Euler triples are not unique.
            np.testing.assert_allclose(Rotation.from_euler("ZYZ", theirs, degrees=True).as_matrix(),
                                       Rotation.from_euler("ZYZ", angles, degrees=True).as_matrix(),
                                       atol=1e-6)

    # ------------------------------------------------------------- export
    def runExport(self, fmt):
        return self.launchProtocol(self.newProtocol(
            ProtCryovisExport, inputCoordinates=getattr(self.pick, OUT_COORDINATES),
            outputFormat=fmt))

    def test_export_relion5_equals_cryovis_convert(self):
        export = self.export  # the workflow's: RELION 5, the protocol's default
        # The engine's own picks, straight through `cryovis convert`, with the same geometry.
        tables = [pd.read_csv(self.pick._getExtraPath(f"{n}_picks.csv")) for n in NAMES]
        direct_in = os.path.abspath(self.getOutputPath("engine_picks.csv"))
        pd.concat(tables, ignore_index=True).to_csv(direct_in, index=False)
        direct = os.path.abspath(self.getOutputPath("direct_particles.star"))
        engine("convert", direct_in, direct, "--to", "relion5",
               "--tomograms", export.tomogramsPath(), "--force")
        self.assertTrue(filecmp.cmp(export.outputPath(), direct, shallow=False),
                        "plugin export and cryovis convert differ")
        particles = starfile.read(export.outputPath())
        particles = particles["particles"] if isinstance(particles, dict) else particles
        self.assertEqual(len(particles), getattr(self.pick, OUT_COORDINATES).getSize())
        self.assertEqual(sorted(set(particles["rlnTomoName"])), NAMES)
        tomos = starfile.read(export.tomogramsPath())
        self.assertEqual(list(tomos["rlnTomoSizeX"]), [SIZE[0]] * len(NAMES))
        self.assertEqual(list(tomos["rlnTomoTiltSeriesPixelSize"]), [VOXEL] * len(NAMES))
        self.assertIn("exported as RELION 5", "\n".join(export.summary()))

    def test_export_relion4_and_dynamo_positions(self):
        coords = getattr(self.pick, OUT_COORDINATES)
        expected = {(m[0], *np.round(m[1:4], 3)) for m in positions(coords)}
        for fmt, label in ((1, "RELION 4"), (2, "Dynamo")):
            export = self.runExport(fmt)
            # RELION 4 positions are tilt-series pixels (tomograms.star gives their size);
            # Dynamo's are the tomograms' voxels, its particles.doc names the tomograms.
            extra = {"tomograms": export.tomogramsPath()} if fmt == 1 else {}
            table = read_particles(export.outputPath(), **extra)
            got = {(t, *np.round(p, 3)) for t, p in
                   zip(table["tomo_name"], table[["x", "y", "z"]].to_numpy())}
            self.assertEqual(got, expected, export.outputPath())
            summary = "\n".join(export.summary())
            self.assertIn(f"exported as {label}", summary)
            for path in export.writtenFiles():
                self.assertTrue(os.path.isfile(path), path)
                self.assertIn(os.path.abspath(path), summary)
        self.assertEqual(len(export.writtenFiles()), 3)  # Dynamo: .tbl, .doc, _classes.doc

    def test_chain_into_tomo_export(self):
        """Our coordinates through tomo's own exporter (RELION, via scipion-em-reliontomo)."""
        from tomo.protocols import ProtExportCoordinates3D
        from tomo.protocols.protocol_export_coords import EXPORT_TO_STAR

        choices = ProtExportCoordinates3D._getExportChoices()
        self.assertIn(EXPORT_TO_STAR, choices, "scipion-em-reliontomo is not installed")
        coords = getattr(self.pick, OUT_COORDINATES)
        prot = self.launchProtocol(self.newProtocol(
            ProtExportCoordinates3D, inputCoordinates=coords,
            outputFormat=choices.index(EXPORT_TO_STAR)))
        star = starfile.read(prot._getExportPath("coords.star"))
        star = star["particles"] if isinstance(star, dict) and "particles" in star else star
        if isinstance(star, dict):
            star = next(v for v in star.values() if "rlnCoordinateX" in v)
        got = sorted(zip(star["rlnTomoName"].astype(str),
                         *(np.round(star[f"rlnCoordinate{a}"].astype(float), 3) for a in "XYZ")))
        want = sorted((m[0], *np.round(m[1:4], 3)) for m in positions(coords))
        self.assertEqual(got, want)

    # ------------------------------------------------------------ extract
    def test_extract_subtomograms(self):
        coords = getattr(self.pickBlob, OUT_COORDINATES)
        prot = self.launchProtocol(self.newProtocol(ProtCryovisExtract,
                                                    inputCoordinates=coords))
        subtomos = getattr(prot, OUT_SUBTOMOGRAMS)
        self.assertIsInstance(subtomos, SetOfSubTomograms)
        box = coords.getBoxSize() + coords.getBoxSize() % 2
        # boxes crossing the border are padded by default: every coordinate is extracted
        self.assertSetSize(subtomos, coords.getSize())
        self.assertAlmostEqual(subtomos.getSamplingRate(), VOXEL)
        want = {(m[0], *np.round(m[1:4], 3)) for m in positions(coords)}
        got, files = set(), set()
        for sub in subtomos.iterSubtomos():  # relinks each coordinate to its tomogram
            data = read_volume(sub.getFileName()).data
            self.assertEqual(data.shape, (box, box, box))
            # normalised by statistics of every 2nd voxel inside the tomogram: near, not at, 0
            self.assertLess(abs(float(np.median(data))), 0.2)
            coord = sub.getCoordinate3D()
            got.add((coord.getTomoId(), *np.round(coord.getPosition(BOTTOM_LEFT_CORNER), 3)))
            np.testing.assert_allclose(sub.getTransform().getMatrix(), coord.getMatrix())
            files.add(sub.getFileName())
        self.assertEqual(got, want)
        self.assertEqual(len(files), coords.getSize())
        first = self.tomograms.getFirstItem()
        self.assertEqual(len(list(subtomos.iterSubtomos(volume=first))),
                         len(positions(coords, first.getTsId())))
        for name in NAMES:
            star = prot._getExtraPath(name, "particles.star")
            table = read_particles(star, format="relion31")
            self.assertEqual(len(table), sum(1 for m in positions(coords, name)))
            optics = starfile.read(star, always_dict=True)["optics"]
            self.assertEqual(int(optics["rlnImageSize"][0]), box)
            self.assertEqual(int(optics["rlnImageDimensionality"][0]), 3)
        summary = "\n".join(prot.summary())
        self.assertIn(f"{coords.getSize()} subtomograms of {box}^3 voxels", summary)
        self.assertTrue(prot.methods())
        odd = self.newProtocol(ProtCryovisExtract, inputCoordinates=coords, boxSize=13)
        self.assertTrue(any("even box" in e for e in odd.validate()), odd.validate())

    # ------------------------------------------------------------- render
    def test_render_with_probabilities_and_viewer(self):
        prot = self.launchProtocol(self.newProtocol(
            ProtCryovisRender, inputTomograms=self.tomograms,
            inputMasks=getattr(self.segment, OUT_PROBABILITIES), imageSize="160x120",
            turntable=True, frames=4))
        files = prot.renderedFiles()
        self.assertEqual([f[0] for f in files], NAMES)
        import matplotlib.image as mpimg
        for _key, png, movie in files:
            self.assertEqual(mpimg.imread(png).shape[:2], (120, 160))
            self.assertTrue(movie and os.path.getsize(movie) > 0)
        summary = "\n".join(prot.summary())
        for _key, png, movie in files:
            self.assertIn(os.path.abspath(png), summary)
            self.assertIn(os.path.abspath(movie), summary)
        views = CryovisRenderViewer(project=self.proj, protocol=prot)._visualize(prot)
        axes = views[0].getFigure().get_axes()
        self.assertEqual(sum(len(ax.get_images()) for ax in axes), len(NAMES))

    def test_render_defaults_without_maps(self):
        prot = self.launchProtocol(self.newProtocol(
            ProtCryovisRender, inputTomograms=self.tomograms, imageSize="120x90"))
        self.assertEqual(len(prot.renderedFiles()), len(NAMES))
        self.assertIn("plain direct volume rendering", "\n".join(prot.summary()))

    # ------------------------------------------------------------- errors
    def test_validate_messages(self):
        """No input, the wrong type of input, no engine: each protocol says so in _validate."""
        coords = getattr(self.pick, OUT_COORDINATES)
        masks = getattr(self.segment, OUT_MASKS)
        # each protocol's main input: its label in the messages, what it takes, wrong types
        inputs = {ProtCryovisSegment: ("inputTomograms", "Input tomograms", (coords, masks)),
                  ProtCryovisPick: ("inputTomograms", "Input tomograms", (coords, masks)),
                  ProtCryovisRender: ("inputTomograms", "Input tomograms", (coords, masks)),
                  ProtCryovisTrain: ("inputTomograms", "Input tomograms", (coords, masks)),
                  ProtCryovisMembranes: ("inputMasks", "Membrane segmentations",
                                         (coords, self.tomograms)),
                  ProtCryovisExport: ("inputCoordinates", "Input 3D coordinates",
                                      (self.tomograms, masks)),
                  ProtCryovisExtract: ("inputCoordinates", "Input 3D coordinates",
                                       (self.tomograms, masks))}
        self.assertEqual(set(inputs), set(PROTOCOLS))
        right = {"inputTomograms": self.tomograms, "inputCoordinates": coords,
                 "inputMasks": getattr(self.segment, OUT_PROBABILITIES)}
        for cls, (attr, label, wrongs) in inputs.items():
            errors = self.newProtocol(cls).validate()
            self.assertIn(f"{label}: nothing selected", "\n".join(errors), cls.__name__)
            for wrong in wrongs:
                errors = self.newProtocol(cls, **{attr: wrong}).validate()
                self.assertIn(f"{label}: a {type(wrong).__name__} was given; this protocol "
                              "needs a", "\n".join(errors), cls.__name__)
        variables = Plugin.getVars()
        saved = variables[CRYOVIS_PROGRAM]
        variables[CRYOVIS_PROGRAM] = "/nonexistent/cryovis"
        try:
            for cls, (attr, _label, _wrongs) in inputs.items():
                errors = self.newProtocol(cls, **{attr: right[attr]}).validate()
                self.assertTrue(any(e.startswith("cryovis engine not found: CRYOVIS_PROGRAM="
                                                 "/nonexistent/cryovis is not an executable")
                                    for e in errors), f"{cls.__name__}: {errors}")
        finally:
            variables[CRYOVIS_PROGRAM] = saved
        for cls in (ProtCryovisSegment, ProtCryovisPick, ProtCryovisRender,
                    ProtCryovisMembranes, ProtCryovisExport, ProtCryovisExtract):
            attr = inputs[cls][0]
            self.assertEqual(self.newProtocol(cls, **{attr: right[attr]}).validate(), [],
                             cls.__name__)

    def test_engine_failure_fails_its_step_and_resume_continues(self):
        folder = os.path.abspath(self.getOutputPath("broken"))
        os.makedirs(folder)
        for name in NAMES:
            shutil.copy(os.path.join(self.data, f"{name}.mrc"), folder)
        victim = os.path.join(folder, "tomo_001.mrc")
        intact = victim + ".intact"
        shutil.copy(victim, intact)
        with open(victim, "r+b") as fh:  # a transfer cut short: the header says more data
            fh.truncate(os.path.getsize(victim) // 2)
        tomos = self.importTomograms(folder, "tomo_*[0-9].mrc")
        # one thread: tomo_000's step finishes before tomo_001's fails (in parallel, Scipion
        # may mark the run failed while the other step is still running)
        prot = self.newProtocol(ProtCryovisSegment, inputTomograms=tomos, numberOfThreads=1)
        self.proj.launchProtocol(prot, wait=True)
        prot = self.proj.getProtocol(prot.getObjId())
        self.assertTrue(prot.isFailed())
        message = prot.getErrorMessage()
        self.assertIn("segment_tomo_001: cryovis segment: error:", message)
        self.assertIn("tomo_001.mrc", message)
        self.assertEqual(len(message.splitlines()), 1, message)
        # that tomogram's step failed, the other's finished; the reason is in the run's log
        status = {(s.funcName.get(), s.argsStr.get()): s.getStatus() for s in prot.loadSteps()}
        self.assertEqual(status[("segmentStep", '["tomo_001"]')], STATUS_FAILED)
        self.assertEqual(status[("segmentStep", '["tomo_000"]')], STATUS_FINISHED)
        with open(prot.getStderrLog()) as fh:
            self.assertIn(message.split(": ", 1)[1], fh.read())
        self.assertTrue(os.path.exists(prot._getExtraPath("segment_tomo_000.json")))
        shutil.copy(intact, victim)
        before = os.path.getmtime(prot._getExtraPath("tomo_000_labels.mrc"))
        prot.runMode.set(MODE_RESUME)
        self.proj.launchProtocol(prot, wait=True)
        prot = self.proj.getProtocol(prot.getObjId())
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        self.assertSetSize(getattr(prot, OUT_MASKS), 2)
        self.assertEqual(os.path.getmtime(prot._getExtraPath("tomo_000_labels.mrc")), before)

    # ----------------------------------------------------------- workflow
    def test_workflow_json(self):
        """The workflow ran from its file as saved, its cryovis protocols at their defaults."""
        self.assertEqual([p.getObjLabel() for p in self.workflow], self.workflowLabels)
        self.assertTrue(all(p.isFinished() for p in self.workflow))
        for prot in self.workflow[1:]:
            fresh = self.newProtocol(type(prot))
            for name, value in prot.iterDefinitionAttributes():
                if not isinstance(value, Pointer) and name not in ("numberOfThreads",
                                                                   "hostName"):
                    self.assertEqual(value.get(), getattr(fresh, name).get(),
                                     f"{prot.getObjLabel()}: {name}")
        self.assertEqual([type(p).__name__ for p in self.workflow],
                         ["ProtImportTomograms", "ProtCryovisSegment", "ProtCryovisMembranes",
                          "ProtCryovisPick", "ProtCryovisExport"])
        self.assertSetSize(getattr(self.segment, OUT_MASKS), len(NAMES))
        self.assertSetSize(getattr(self.membranes, OUT_INSTANCES), len(NAMES))
        picks = getattr(self.pick, OUT_COORDINATES)
        self.assertSetSize(picks, sum(engineRecord(self.pick, f"pick_{n}")["n_picks"]
                                      for n in NAMES))
        self.assertEqual(self.export.inputCoordinates.get().getObjId(), picks.getObjId())
        self.assertEqual(len(read_particles(self.export.outputPath(),
                                            tomograms=self.export.tomogramsPath())),
                         picks.getSize())
