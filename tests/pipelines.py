"""Pipelines the tests build: a tiny transformer + crf_ner pipeline, offline."""
from pathlib import Path

import spacy
from thinc.api import Config

from synthetic import ANATOMY, DISEASE_HEAD, DRUG, TEMPLATES
from tiny_transformer import build_tiny_bert

CONFIG = """
[nlp]
lang = "en"
pipeline = ["transformer", "crf_ner"]

[components]

[components.transformer]
factory = "transformer"
max_batch_items = 4096

{transformer_model}

[components.transformer.model.tokenizer_config]
use_fast = true

[components.transformer.model.transformer_config]

[components.crf_ner]
factory = "crf_ner"

[components.crf_ner.model]
@architectures = "spacy_crf_ner.CrfTagger.v1"

[components.crf_ner.model.tok2vec]
@architectures = "spacy_crf_ner.TextCNN.v1"
kernel_sizes = [3]
dropout = 0.0

[components.crf_ner.model.tok2vec.tok2vec]
@architectures = "spacy-transformers.TransformerListener.v1"
grad_factor = 1.0
upstream = "*"

[components.crf_ner.model.tok2vec.tok2vec.pooling]
@layers = "reduce_mean.v1"
"""


# Small windows counted in word pieces, so that training sees several overlapping windows:
# our one-pass architecture (the configs' default), or spacy-transformers' own model with our
# span getter (what configs written before it use).
TRANSFORMER_MODELS = {
    "windowed": """
[components.transformer.model]
@architectures = "spacy_crf_ner.WindowedTransformerModel.v1"
name = "{name}"
window = 12
stride = 8
mixed_precision = false
""",
    "span_getter": """
[components.transformer.model]
@architectures = "spacy-transformers.TransformerModel.v3"
name = "{name}"
mixed_precision = false

[components.transformer.model.get_spans]
@span_getters = "spacy_crf_ner.wordpiece_strided_spans.v1"
name = "{name}"
window = 12
stride = 8
""",
}


def tiny_transformer_nlp(folder: Path, transformer_model: str = "windowed", words=(),
                         transformer_settings: dict = {}, **crf_ner):
    """A blank ``transformer -> crf_ner`` pipeline on a tiny BERT built in ``folder``;
    ``words``: more words for its vocabulary; ``crf_ner``: settings of the component
    (e.g. ``nesting_depth=2``); ``transformer_settings``: of its transformer model
    (e.g. ``precision="int8"``)."""
    words = " ".join(TEMPLATES + ANATOMY + DISEASE_HEAD + DRUG + list(words)).split()
    bert = build_tiny_bert(Path(folder) / "bert", words)
    text = CONFIG.replace("{transformer_model}", TRANSFORMER_MODELS[transformer_model])
    config = Config().from_str(text.replace("{name}", str(bert)))
    config["components"]["crf_ner"].update(crf_ner)
    config["components"]["transformer"]["model"].update(transformer_settings)
    return spacy.util.load_model_from_config(config, auto_fill=True)
