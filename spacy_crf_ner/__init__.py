"""spaCy plugin: transformer -> text CNN -> per-label BIOUL CRF named-entity recognizer.

Importing this package stays cheap (no torch, no transformers): spaCy imports every
``spacy_factories`` entry point whenever a pipeline is created.
"""
from .about import __version__

__all__ = ["__version__"]
