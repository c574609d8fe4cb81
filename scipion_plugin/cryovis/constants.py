"""Names shared by the plugin's Plugin class, protocols and tests."""

ENGINE_VERSION = "0.1.0"

# Scipion variables (`scipion3 config --show`, or the process environment).
CRYOVIS_HOME = "CRYOVIS_HOME"          # the engine's own environment, installed by defineBinaries
CRYOVIS_PROGRAM = "CRYOVIS_PROGRAM"    # the `cryovis` executable; empty: CRYOVIS_HOME's, else PATH
CRYOVIS_PIP_SPEC = "CRYOVIS_PIP_SPEC"  # what defineBinaries installs into CRYOVIS_HOME
CRYOVIS_PIP_SPEC_DEFAULT = f"cryoet-integration[engine]=={ENGINE_VERSION}"
CRYOVIS_ENV_DIR = "venv"               # inside CRYOVIS_HOME

# Output names (attributes of the protocols).
OUT_MASKS = "tomoMasks"
OUT_PROBABILITIES = "probabilities"
OUT_COORDINATES = "coordinates"
OUT_SUBTOMOGRAMS = "subtomograms"
OUT_INSTANCES = "membraneInstances"
OUT_REFINED = "refinedMembranes"
OUT_MODEL = "cryovisModel"

# Extra attribute of each Coordinate3D: the engine's class name (the score is tomo's own).
COORD_CLASS_ATTR = "_cryovisClass"

# Export formats of "cryovis - export coordinates": label -> `cryovis convert --to` value.
EXPORT_FORMATS = {"RELION 5": "relion5", "RELION 4": "relion4", "Dynamo": "dynamo"}
