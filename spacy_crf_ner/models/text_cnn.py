"""``spacy_crf_ner.TextCNN.v1``: an embedding layer followed by a text CNN."""
from typing import Any, List, Optional

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model, chain
from thinc.types import Floats2d

from .torch_layer import lazy_torch_layer


def build_text_cnn(
    tok2vec: Model[List[Doc], List[Floats2d]],
    kernel_sizes: List[int] = [3],
    out_channels: Optional[int] = None,
    residual: bool = True,
    normalize: str = "pre",
    activation: str = "relu",
    dropout: float = 0.0,
) -> Model[List[Doc], List[Floats2d]]:
    """Re-contextualise the vectors of ``tok2vec`` with a residual text CNN.

    The output width equals the input width (the CNN is residual); ``out_channels`` (per
    kernel size) defaults to it too. Each document is convolved on its own.
    """

    def build_module(model: Model) -> Any:  # the torch module
        from .pytorch_text_cnn import TextCNN

        width = model.get_dim("nI")
        model.set_dim("nO", width)
        return TextCNN(
            input_size=width,
            output_size=width,
            out_channels=out_channels or width,
            kernel_sizes=kernel_sizes,
            activation=activation,
            residual=residual,
            normalize=normalize,
            dropout=dropout,
        )

    # Fail on bad options now, not after the transformer has loaded.
    from .pytorch_text_cnn import ACTIVATIONS, NORMALIZE

    if activation not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
    if normalize not in NORMALIZE:
        raise ValueError(f"Unknown normalize {normalize!r}; choose from {list(NORMALIZE)}")
    cnn = lazy_torch_layer("crf_text_cnn", build_module, padded_output=False, dims={"nO": None})
    return chain(tok2vec, cnn)


registry.architectures("spacy_crf_ner.TextCNN.v1")(build_text_cnn)
