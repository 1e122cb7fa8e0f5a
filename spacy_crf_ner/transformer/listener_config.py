"""The config that replaces a transformer listener (``nlp.replace_listeners``), config only.

spaCy asks the transformer's model for the config of the layers that replace a listener
(its ``attrs["replace_listener_cfg"]``), but hands it the component's ``model.tok2vec``
section as "the listener's config". In ``crf_ner`` that section is the text CNN and the
listener sits one level deeper, so :func:`listener_replacement_config` looks for it there.
Read by the model (:mod:`.model_class`) and installed on spacy-transformers' models by
:mod:`.listeners`; it builds nothing and imports neither torch nor spacy-transformers.
"""
from typing import Any, Dict, Optional

WINDOWED_MODEL = "spacy_crf_ner.WindowedTransformerModel.v1"
WINDOWED_TOK2VEC = "spacy_crf_ner.WindowedTok2VecTransformer.v1"


def find_listener_config(section: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The first listener config at or below ``section``, following ``tok2vec`` keys
    (``crf_ner``'s text CNN wraps the listener as its own ``tok2vec``); None if there is none."""
    while isinstance(section, dict):
        if "Listener" in str(section.get("@architectures", "")):
            return section
        section = section.get("tok2vec")  # type: ignore[assignment]
    return None


def listener_replacement_config(
    tok2vec_model_cfg: Dict[str, Any], listener_model_cfg: Dict[str, Any]
) -> Dict[str, Any]:
    """The config of the layers that replace a listener of the model ``tok2vec_model_cfg``.

    ``listener_model_cfg`` is the section spaCy passes (the component's ``model.tok2vec``);
    the listener itself may sit deeper in it.
    """
    listener = find_listener_config(listener_model_cfg)
    if tok2vec_model_cfg.get("@architectures") == WINDOWED_MODEL:
        result = dict(tok2vec_model_cfg)
        if listener is None or "TransformerListener" not in listener["@architectures"]:
            return result
        result["@architectures"] = WINDOWED_TOK2VEC
        result["pooling"] = listener["pooling"]
        result["grad_factor"] = listener.get("grad_factor", 1.0)
        return result
    from ..internals import spacy_transformers_replace_listener_cfg

    return spacy_transformers_replace_listener_cfg()(tok2vec_model_cfg, listener or listener_model_cfg)
