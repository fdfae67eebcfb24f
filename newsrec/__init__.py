"""newsrec: neural news recommendation (GLORY, FUM, NRMS) with PyTorch Lightning and PyG."""

__version__ = "0.1.0.dev0"

from newsrec.errors import DataFormatError, MissingNewsError  # noqa: E402

__all__ = ["DataFormatError", "MissingNewsError", "__version__"]
