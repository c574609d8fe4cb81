"""The cryovis protocols (Scipion collects every protocol class exported here)."""

from .protocol_export import ProtCryovisExport
from .protocol_extract import ProtCryovisExtract
from .protocol_membranes import ProtCryovisMembranes
from .protocol_pick import ProtCryovisPick
from .protocol_render import ProtCryovisRender
from .protocol_segment import ProtCryovisSegment
from .protocol_train import ProtCryovisTrain

__all__ = ["ProtCryovisExport", "ProtCryovisExtract", "ProtCryovisMembranes", "ProtCryovisPick",
           "ProtCryovisRender", "ProtCryovisSegment", "ProtCryovisTrain"]
