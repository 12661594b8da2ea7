"""memvos: video object segmentation with space-time memory networks."""

from memvos.errors import InputError

__version__ = "0.1.0"
__all__ = ["InputError", "__version__"]
