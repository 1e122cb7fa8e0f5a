"""``spacy_crf_ner.CrfTagger.v1``: embeddings -> per-label BIOUL emissions (+ the CRF).

Besides the builder, this module is the pipe's door to the torch head: ``tagger_loss`` and
``tagger_decode`` take and return Thinc/NumPy arrays, convert to torch once, and leave the
math to ``EmissionHead`` (``pytorch_emission_head.py``). Importing it needs no torch.
"""
from typing import Any, List, Tuple

import numpy
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model, chain
from thinc.types import Floats2d, Floats4d

from .torch_layer import get_torch_module, lazy_torch_layer

HEAD_NAME = "crf_emissions"

# The tagger's output: padded emissions [N, T, C, 5] (C = D nesting levels x L labels) and
# each document's length in tokens.
Emissions = Tuple[Floats4d, List[int]]


def build_crf_tagger(
    tok2vec: Model[List[Doc], List[Floats2d]],
    learnable_transitions: bool = True,
    dropout: float = 0.0,
) -> Model[List[Doc], Emissions]:
    """Project token vectors to BIOUL emission scores for every label.

    The output is ``(emissions, lengths)`` with emissions ``[N, T, D * L, 5]`` padded (D
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


def tagger_loss(
    model: Model, emissions: Emissions, gold: numpy.ndarray, mode: str, update_params: bool
) -> Tuple[float, Any]:
    """Loss of the gold tags per gold token of the batch, and its gradient w.r.t. the
    emissions (a Thinc array shaped like them).

    ``gold``: int tags ``[N, T, C]`` (``spans.bioul.encode_levels`` per doc, zero-padded).
    With ``update_params``, the gradients of the head parameters that the loss reaches
    directly (CRF transition and nesting scores) are added to their ``.grad``, ready for the
    optimizer; the rest of the model gets its gradient by backpropagating the returned one.
    """
    import torch
    from thinc.api import torch2xp, xp2torch

    from .padding import lengths_to_mask

    head = get_emission_head(model)
    em_xp, lengths = emissions
    with torch.enable_grad():
        em = xp2torch(em_xp, requires_grad=True)
        gold_t = torch.as_tensor(gold, device=em.device)
        mask = lengths_to_mask(torch.as_tensor(lengths, device=em.device), em.shape[1])
        loss = head.loss(em, gold_t, mask, mode) / max(sum(lengths), 1)
        params = head.loss_parameters(mode) if update_params else []
        grads = torch.autograd.grad(loss, [em] + params)
    for param, grad in zip(params, grads[1:]):
        param.grad = grad if param.grad is None else param.grad + grad
    return float(loss.detach()), torch2xp(grads[0])


def tagger_decode(
    model: Model, emissions: Emissions, mode: str
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Decoded spans ``[S, 4] = (doc, chain, start, end)`` (end exclusive) and their
    confidences ``[S]``, as ``EmissionHead.decode_spans`` gives them."""
    import torch
    from thinc.api import xp2torch

    from .padding import lengths_to_mask

    em_xp, lengths = emissions
    em = xp2torch(em_xp)
    mask = lengths_to_mask(torch.as_tensor(lengths, device=em.device), em.shape[1])
    return get_emission_head(model).decode_spans(em, mask, mode)
