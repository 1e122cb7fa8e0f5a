"""A standalone ``crf_ner``: ``nlp.replace_listeners`` then save/load, bytes, and sourcing.

spaCy hands the transformer's ``replace_listener_cfg`` the component's ``model.tok2vec``
section, where ``crf_ner`` keeps its text CNN, not the listener; without
``spacy_crf_ner.transformer.listeners`` the saved config held a bare transformer and did not load.
"""
import pytest
import spacy
from thinc.api import Config

from pipelines import tiny_transformer_nlp
from synthetic import make_examples, train

LISTENER_PATH = ["model.tok2vec.tok2vec"]
TEXTS = [
    "The patient has lung cancer and takes aspirin daily .",
    "Known skin lesion ; metformin started today .",
    "",
]

TOK2VEC_CONFIG = """
[nlp]
lang = "en"
pipeline = ["tok2vec", "crf_ner"]

[components]

[components.tok2vec]
factory = "tok2vec"

[components.tok2vec.model]
@architectures = "spacy.Tok2Vec.v2"

[components.tok2vec.model.embed]
@architectures = "spacy.MultiHashEmbed.v2"
width = 32
attrs = ["NORM", "SHAPE"]
rows = [500, 50]
include_static_vectors = false

[components.tok2vec.model.encode]
@architectures = "spacy.MaxoutWindowEncoder.v2"
width = 32
depth = 1
window_size = 1
maxout_pieces = 2

[components.crf_ner]
factory = "crf_ner"

[components.crf_ner.model]
@architectures = "spacy_crf_ner.CrfTagger.v1"

[components.crf_ner.model.tok2vec]
@architectures = "spacy_crf_ner.TextCNN.v1"
kernel_sizes = [3]
dropout = 0.0

[components.crf_ner.model.tok2vec.tok2vec]
@architectures = "spacy.Tok2VecListener.v1"
width = 32
upstream = "*"
"""


class Predictions:
    """Spans and their confidences: equal only if the same weights ran the same layers.
    Confidences are compared to 1e-5: a reloaded model may sum floats in another order."""

    def __init__(self, nlp):
        self.spans, self.scores = [], []
        for doc in nlp.pipe(TEXTS):
            group = doc.spans["sc"]
            self.spans.append([(s.start_char, s.end_char, s.label_) for s in group])
            self.scores.append([float(x) for x in group.attrs.get("scores", [])])

    def __eq__(self, other):
        return self.spans == other.spans and all(
            a == pytest.approx(b, abs=1e-5) for a, b in zip(self.scores, other.scores))

    def __repr__(self):
        return f"Predictions({self.spans}, {self.scores})"


def predictions(nlp) -> Predictions:
    return Predictions(nlp)


def trained(tmp_path, layout):
    # Same weights whatever ran before in the process (the suite's order changes torch's
    # global seed): otherwise a few runs ended with a model that finds nothing.
    spacy.util.fix_random_seed(0)
    if layout == "tok2vec":
        nlp = spacy.util.load_model_from_config(Config().from_str(TOK2VEC_CONFIG), auto_fill=True)
    else:
        nlp = tiny_transformer_nlp(tmp_path, layout)
    train(nlp, make_examples(nlp, 40, seed=3), epochs=6, drop=0.0)
    return nlp


@pytest.mark.parametrize("layout", ["windowed", "span_getter", "tok2vec"])
def test_replaced_listener_round_trips_through_disk_bytes_and_sourcing(tmp_path, layout):
    nlp = trained(tmp_path, layout)
    upstream = nlp.pipe_names[0]
    expected = predictions(nlp)
    assert any(expected.spans), "the trained pipeline should find entities"

    nlp.replace_listeners(upstream, "crf_ner", LISTENER_PATH)
    assert predictions(nlp) == expected
    section = nlp.config["components"]["crf_ner"]["model"]["tok2vec"]["tok2vec"]
    assert "Listener" not in section["@architectures"]
    if layout != "tok2vec":
        assert "pooling" in section, section  # the listener's pooling moved into the config

    nlp.to_disk(tmp_path / "standalone")
    loaded = spacy.load(tmp_path / "standalone")
    assert predictions(loaded) == expected

    from_bytes = spacy.util.get_lang_class("en").from_config(nlp.config).from_bytes(nlp.to_bytes())
    assert predictions(from_bytes) == expected

    # The point of a standalone component: it runs without the component it listened to.
    alone = spacy.blank("en")
    alone.add_pipe("crf_ner", source=loaded)
    assert alone.pipe_names == ["crf_ner"]
    assert predictions(alone) == expected
    alone.to_disk(tmp_path / "alone")
    assert predictions(spacy.load(tmp_path / "alone")) == expected


def test_replace_listeners_when_sourcing_from_a_config(tmp_path):
    """``[components.crf_ner] source = ... replace_listeners = [...]`` in a training config."""
    trained(tmp_path, "windowed").to_disk(tmp_path / "shared")
    expected = predictions(spacy.load(tmp_path / "shared"))
    config = Config().from_str(f"""
[nlp]
lang = "en"
pipeline = ["crf_ner"]

[components]

[components.crf_ner]
source = "{tmp_path / 'shared'}"
replace_listeners = {LISTENER_PATH!r}
""".replace("'", '"'))
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    nlp.to_disk(tmp_path / "sourced")
    assert predictions(spacy.load(tmp_path / "sourced")) == expected
