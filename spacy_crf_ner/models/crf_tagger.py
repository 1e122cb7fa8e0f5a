"""``spacy_crf_ner.CrfTagger.v1``: embeddings -> per-label BIOUL emissions (+ the CRF)."""
from typing import Any, List, Tuple

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model, chain
from thinc.types import Floats2d, Floats4d

from .torch_layer import get_torch_module, lazy_torch_layer

HEAD_NAME = "crf_emissions"

# Padded emissions [B, T, D * L, 5] and each document's length in tokens.
Emissions = Tuple[Floats4d, List[int]]


def build_crf_tagger(
    tok2vec: Model[List[Doc], List[Floats2d]],
    learnable_transitions: bool = True,
    dropout: float = 0.0,
) -> Model[List[Doc], Emissions]:
    """Project token vectors to BIOUL emission scores for every label.

    The output is ``(emissions, lengths)`` with emissions ``[B, T, D * L, 5]`` padded (D
    nesting levels, 1 unless the pipe's ``nesting_depth`` says otherwise). The CRF
    (transition scores, forward-backward, Viterbi) sits in the same torch module and is
    used by the pipe for the loss and for decoding. The number of labels ``nL`` and of
    nesting levels ``nD`` are set by the pipe before ``initialize``.
    """

    def build_module(model: Model) -> Any:  # the torch module
        from .pytorch_emission_head import EmissionHead

        return EmissionHead(
            input_size=model.get_dim("nI"),
            num_labels=model.get_dim("nL"),
            learnable_transitions=learnable_transitions,
            dropout=dropout,
            nesting_depth=model.get_dim("nD"),
        )

    head = lazy_torch_layer(
        HEAD_NAME, build_module, padded_output=True, dims={"nL": None, "nD": None}
    )
    model: Model[List[Doc], Emissions] = chain(tok2vec, head)
    model.set_ref("head", head)
    model.set_ref("tok2vec", tok2vec)
    return model


registry.architectures("spacy_crf_ner.CrfTagger.v1")(build_crf_tagger)


def get_emission_head(model: Model) -> Any:
    """The ``EmissionHead`` torch module of a CrfTagger model (after initialize)."""
    return get_torch_module(model.get_ref("head"))
