"""The plugin's own Scipion objects (Scipion's mapper finds them in this module by name)."""

import os

from pwem.objects import EMObject
from pyworkflow.object import CsvList, Float, String


class CryovisModel(EMObject):
    """A segmentation model trained with ``cryovis train segmenter``: MODEL.pt with its card
    MODEL.json beside it, the class names in output order and the model's voxel size (Å).

    "cryovis - segment" takes it as its ``inputModel``.
    """

    def __init__(self, path=None, classes=None, voxelSize=None, **kwargs):
        super().__init__(**kwargs)
        self._path = String(path)
        self._classes = CsvList(pType=str)
        self._classes.set(list(classes or []))
        self._voxelSize = Float(voxelSize)

    def getPath(self):
        """MODEL.pt, the weights (its card MODEL.json is beside it)."""
        return self._path.get()

    def getCardPath(self):
        return os.path.splitext(self.getPath())[0] + ".json"

    def getClasses(self):
        """Class names in the order of the model's outputs (as painted for sparse labels)."""
        return list(self._classes)

    def getVoxelSize(self):
        """The voxel size the model works at (Å); tomograms are rescaled to it."""
        return self._voxelSize.get()

    def __str__(self):
        return (f"{self.getClassName()} ({', '.join(self.getClasses())}; "
                f"{self.getVoxelSize():g} Å/voxel)")
