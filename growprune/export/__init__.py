"""Compressed export of sparse models and loading them back.

``export_model`` writes a safetensors file in which every pruned tensor is a packed bitmask
plus its kept values (``format="sparse"``) or plain weights (``"dense"``); ``load`` rebuilds the
model from the builder recorded in the file and loads the weights exactly.
"""

from growprune.export.errors import ExportError, ExportUsageError, ExportWarning
from growprune.export.reader import ExportedFile, load, read_export, read_metadata
from growprune.export.writer import ExportSummary, export_model

__all__ = [
    "ExportError",
    "ExportSummary",
    "ExportUsageError",
    "ExportWarning",
    "ExportedFile",
    "export_model",
    "load",
    "read_export",
    "read_metadata",
]
