"""Training with a (tiny, locally built) transformer through a listener, then reloading."""
import pytest
import spacy
from thinc.api import Config

from synthetic import TEMPLATES, ANATOMY, DISEASE_HEAD, DRUG, make_examples, span_set, train
from tiny_transformer import build_tiny_bert

CONFIG = """
[nlp]
lang = "en"
pipeline = ["transformer", "crf_ner"]

[components]

[components.transformer]
factory = "transformer"
max_batch_items = 4096

[components.transformer.model]
@architectures = "spacy-transformers.TransformerModel.v3"
name = "{name}"
mixed_precision = false

[components.transformer.model.get_spans]
@span_getters = "spacy-transformers.strided_spans.v1"
window = 128
stride = 96

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


@pytest.mark.slow
def test_tiny_transformer_pipeline_learns_and_reloads(tmp_path):
    words = " ".join(TEMPLATES + ANATOMY + DISEASE_HEAD + DRUG).split()
    bert = build_tiny_bert(tmp_path / "bert", words)
    nlp = spacy.util.load_model_from_config(Config().from_str(CONFIG.replace("{name}", str(bert))), auto_fill=True)
    examples = make_examples(nlp, 60, seed=3)
    train(nlp, examples, epochs=15, drop=0.0)
    assert nlp.evaluate(examples)["spans_sc_f"] >= 0.9
    texts = [eg.reference.text for eg in examples[:8]]
    before = [span_set(d) for d in nlp.pipe(texts)]
    nlp.to_disk(tmp_path / "model")
    loaded = spacy.load(tmp_path / "model")
    assert [span_set(d) for d in loaded.pipe(texts)] == before
