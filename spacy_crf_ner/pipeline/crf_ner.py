"""The ``crf_ner`` pipe: per-label BIOUL CRF named-entity recognition.

Training modes and how each one decodes (the two always agree):

* ``"joint"``: CRF negative log-likelihood; decoded by constrained Viterbi.
* ``"marginal"``: cross-entropy on the CRF posterior marginals; decoded by constrained Viterbi.
* ``"independent"``: per-token softmax cross-entropy, no CRF; decoded by per-token argmax,
  read leniently into spans (see ``spans.bioul.decode_tags``).

Losses are summed over documents, labels and tokens and divided by the number of tokens in
the batch (per gold token over the whole batch), so they do not depend on batch size.

Each predicted span gets a confidence: the posterior probability that its label's chain
tags exactly this span (B I* L, or U), from the CRF's forward-backward scores (per-token
softmax in ``"independent"`` mode). It is stored spancat-style as
``doc.spans[key].attrs["scores"]`` (aligned with the group's spans).

Nested entities of the same label (``nesting_depth`` > 1): each label gets one chain per
nesting level, outermost first, each level conditioned on the one above (see
``models.pytorch_emission_head.EmissionHead``). Decoding runs level by level, so an inner
span always lies strictly inside an outer span of its label and never crosses another. An
inner span's confidence is conditional on the decoded levels above it. Span groups get
every level; ``doc.ents`` keeps a non-overlapping subset (longest first, so outer spans).
"""
import warnings
import weakref
from itertools import islice
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

import numpy
import srsly
from spacy import util
from spacy.errors import Errors
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer, set_dropout_rate

from ..integrity import guard_pipeline_files
from ..models.crf_tagger import Emissions, get_emission_head, tagger_decode, tagger_loss
from ..models.modes import MODES
from ..models.torch_layer import build_torch_layers, torch_layer_dims
from ..spans import get_spans, select_longest_first
from ..spans.bioul import encode_levels, spans_per_doc
from ..spans.consistency import propagate_within_doc
from ..transformer.listeners import route_listener_replacement
from ..transformer.precision import record_precision
from .scoring import crf_ner_score

# What ``predict`` returns for one doc: spans ``[n, 3] = (label, start, end)`` (token
# offsets, end exclusive, sorted by position) and their confidences ``[n]``.
DocPrediction = Tuple[numpy.ndarray, numpy.ndarray]

DEFAULT_MODEL_CONFIG = """
[model]
@architectures = "spacy_crf_ner.CrfTagger.v1"
learnable_transitions = true
dropout = 0.0

[model.tok2vec]
@architectures = "spacy_crf_ner.TextCNN.v1"
kernel_sizes = [3]
residual = true
normalize = "pre"
activation = "relu"
dropout = 0.1

[model.tok2vec.tok2vec]
@architectures = "spacy.Tok2Vec.v2"

[model.tok2vec.tok2vec.embed]
@architectures = "spacy.MultiHashEmbed.v2"
width = 96
attrs = ["NORM", "PREFIX", "SUFFIX", "SHAPE"]
rows = [5000, 1000, 2500, 2500]
include_static_vectors = false

[model.tok2vec.tok2vec.encode]
@architectures = "spacy.MaxoutWindowEncoder.v2"
width = 96
depth = 4
window_size = 1
maxout_pieces = 3
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_MODEL_CONFIG)["model"]


# The pipeline each component was made for (weak both ways, and outside the component, which
# stays picklable): to record the precision into its nlp.meta.
_PIPELINE_OF: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


@Language.factory(
    "crf_ner",
    assigns=["doc.ents", "doc.spans"],
    default_config={
        "model": DEFAULT_MODEL,
        "labels": None,
        "target_span_getter": "sc",
        "span_setter": ["ents", "sc"],
        "mode": "joint",
        "nesting_depth": 1,
        "confidence_threshold": 0.0,
        "document_consistency": False,
        "scorer": {"@scorers": "spacy_crf_ner.crf_ner_scorer.v1"},
    },
    default_score_weights={
        "spans_sc_f": 1.0,
        "spans_sc_p": 0.0,
        "spans_sc_r": 0.0,
        "spans_sc_per_type": None,
        "ents_f": 0.0,
        "ents_p": 0.0,
        "ents_r": 0.0,
        "ents_per_type": None,
    },
)
def make_crf_ner(
    nlp: Language,
    name: str,
    model: Model,
    labels: Optional[List[str]] = None,
    target_span_getter: str = "sc",
    span_setter: Union[str, List[str]] = ["ents", "sc"],
    mode: str = "joint",
    nesting_depth: int = 1,
    confidence_threshold: float = 0.0,
    document_consistency: bool = False,
    scorer: Optional[Callable] = crf_ner_score,
) -> "CrfNer":
    """Create a ``crf_ner`` component.

    labels: fixed label set; otherwise inferred from the training data at ``initialize``.
    target_span_getter: where gold spans live in reference docs: ``"ents"`` or a span key.
    span_setter: where predictions go: ``"ents"``, a span key, ``"*"`` (one group per label)
        or a list of these.
    mode: ``"joint"``, ``"marginal"`` or ``"independent"`` (see the module docstring).
    nesting_depth: how many levels of same-label nesting to learn and predict; 1 = no
        nesting (inner spans of the same label are counted and left out of training).
    confidence_threshold: predicted spans with a lower confidence are not written.
    document_consistency: copy each predicted label to the other occurrences of the same
        words in the same document (``spans.consistency``); a post-step, off by default.
    """
    guard_pipeline_files(nlp)  # checksums written on save, verified on load: integrity.py
    route_listener_replacement(nlp)  # so that replace_listeners writes a loadable config
    component = CrfNer(
        nlp.vocab,
        model,
        name,
        labels=labels,
        target_span_getter=target_span_getter,
        span_setter=span_setter,
        mode=mode,
        nesting_depth=nesting_depth,
        confidence_threshold=confidence_threshold,
        document_consistency=document_consistency,
        scorer=scorer,
    )
    # nlp.meta says what the transformer's precision ("auto" included) runs at here; again
    # after loading, since nlp.from_disk reads meta.json (written elsewhere) after this.
    _PIPELINE_OF[component] = weakref.ref(nlp)
    component.record_precision()
    return component


# Fates of the gold spans that training cannot use (``CrfNer.stats`` keys).
_GOLD_FATES = {
    "same_label_crossing": "crossing a span of the same label",
    "nested_too_deep": "nested too deep",
    "misaligned": "misaligned",
    "unknown_label": "unknown label",
}


def _new_gold_counts() -> Dict[str, int]:
    return {"gold_spans": 0, **{fate: 0 for fate in _GOLD_FATES}}


def _normalise_setter(span_setter: Union[str, Sequence[str]]) -> List[str]:
    targets = [span_setter] if isinstance(span_setter, str) else list(span_setter)
    if not targets or any(not isinstance(t, str) or not t for t in targets):
        raise ValueError(
            f"span_setter must be 'ents', a span key, '*' or a list of these; got {span_setter!r}"
        )
    return list(dict.fromkeys(targets))


class CrfNer(TrainablePipe):
    """Tag each label with its own BIOUL chain and a CRF; write the spans to the doc."""

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "crf_ner",
        *,
        labels: Optional[Iterable[str]] = None,
        target_span_getter: str = "sc",
        span_setter: Union[str, Sequence[str]] = ("ents", "sc"),
        mode: str = "joint",
        nesting_depth: int = 1,
        confidence_threshold: float = 0.0,
        document_consistency: bool = False,
        scorer: Optional[Callable] = crf_ner_score,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if isinstance(nesting_depth, bool) or not isinstance(nesting_depth, int) or nesting_depth < 1:
            raise ValueError(f"nesting_depth must be an integer >= 1, got {nesting_depth!r}")
        if not isinstance(target_span_getter, str) or not target_span_getter:
            raise ValueError(
                f"target_span_getter must be 'ents' or a span key, got {target_span_getter!r}"
            )
        if not 0.0 <= confidence_threshold <= 1.0:
            raise ValueError(f"confidence_threshold must be in [0, 1], got {confidence_threshold}")
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {
            "labels": [],
            "target_span_getter": target_span_getter,
            "span_setter": _normalise_setter(span_setter),
            "mode": mode,
            "nesting_depth": nesting_depth,
            "confidence_threshold": float(confidence_threshold),
            "document_consistency": bool(document_consistency),
            "torch_layer_dims": {},
        }
        for label in labels or []:
            self.add_label(label)
        # Gold spans seen in training, by fate (see ``gold_tags``).
        self.stats = _new_gold_counts()
        self._lost_gold_warned = False

    # ----------------------------------------------------------------- labels
    @property
    def labels(self) -> Tuple[str, ...]:
        return tuple(self.cfg["labels"])

    @property
    def label_data(self) -> List[str]:
        return list(self.labels)

    def add_label(self, label: str) -> int:
        if not isinstance(label, str) or not label:
            raise ValueError(Errors.E187)
        if label in self.labels:
            return 0
        if self._head_built():
            raise ValueError(
                f"Cannot add label {label!r} to '{self.name}': the model is already initialized "
                f"with labels {list(self.labels)}. Give every label before nlp.initialize()."
            )
        self.cfg["labels"].append(label)
        self.vocab.strings.add(label)
        return 1

    @property
    def mode(self) -> str:
        return self.cfg["mode"]

    @property
    def nesting_depth(self) -> int:
        return self.cfg["nesting_depth"]

    @property
    def span_setter(self) -> List[str]:
        return list(self.cfg["span_setter"])

    @property
    def target_span_getter(self) -> str:
        return self.cfg["target_span_getter"]

    # ------------------------------------------------------------ model access
    def _head_model(self) -> Model:
        try:
            return self.model.get_ref("head")
        except KeyError:
            raise ValueError(
                f"The model of '{self.name}' has no 'head' ref: use the architecture "
                "spacy_crf_ner.CrfTagger.v1."
            ) from None

    def _head_built(self) -> bool:
        return bool(self.model.has_ref("head") and self._head_model().layers)

    @property
    def head(self):
        """The ``EmissionHead`` torch module (after initialize or loading)."""
        return get_emission_head(self.model)

    @property
    def crf(self):
        """The ``BIOULCRF`` torch module (after initialize or loading)."""
        return self.head.crf

    # --------------------------------------------------------------- training
    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Sequence[str]] = None,
    ) -> None:
        """Take labels from ``labels`` (e.g. ``spacy init labels``) or infer them from the
        examples, then initialize the model on a sample of documents."""
        validate_get_examples(get_examples, "CrfNer.initialize")
        if labels is not None:
            for label in labels:
                self.add_label(label)
        elif not self.labels:
            found: Set[str] = set()
            for eg in get_examples():
                found.update(span.label_ for span in self._reference_spans(eg.reference))
            for label in sorted(found):
                self.add_label(label)
        if not self.labels:
            raise ValueError(
                f"'{self.name}' found no labels: the reference docs have no spans under "
                f"target_span_getter={self.target_span_getter!r}, and no labels were given."
            )
        head = self._head_model()
        if head.maybe_get_dim("nL") not in (None, len(self.labels)):
            raise ValueError(f"'{self.name}' was already initialized with other labels.")
        head.set_dim("nL", len(self.labels))
        if head.maybe_get_dim("nD") not in (None, self.nesting_depth):
            raise ValueError(f"'{self.name}' was already initialized with another nesting_depth.")
        head.set_dim("nD", self.nesting_depth)
        doc_sample = [eg.x for eg in islice(get_examples(), 10)]
        self.model.initialize(X=doc_sample)
        self._warn_lost_gold(self.count_gold(get_examples()), "in the training data")

    def count_gold(self, examples: Iterable[Example]) -> Dict[str, int]:
        """The gold spans of ``examples`` (``"gold_spans"``) and, by fate, those training
        cannot use (the keys of ``stats``), without training or touching ``stats``."""
        counts = _new_gold_counts()
        for eg in examples:
            self.gold_tags(eg, counts)
        return counts

    def _warn_lost_gold(self, counts: Dict[str, int], where: str) -> None:
        """Say once which gold spans training cannot use, how many and why (the full count
        at ``initialize``; otherwise at the first training batch that loses one)."""
        lost = {k: v for k, v in counts.items() if k != "gold_spans" and v}
        if not lost or self._lost_gold_warned:
            return
        self._lost_gold_warned = True
        detail = ", ".join(f"{v} {_GOLD_FATES[k]}" for k, v in lost.items())
        hints = {
            "nested_too_deep": f"Spans nested in a span of the same label deeper than "
            f"nesting_depth={self.nesting_depth} are left out: raise nesting_depth to "
            "learn them.",
            "same_label_crossing": "Of two crossing spans of the same label the longer "
            "(then the leftmost) is kept.",
            "misaligned": "Misaligned spans do not start/end on a token of the pipeline's "
            "tokenizer.",
        }
        parts = [
            f"[{self.name}] {sum(lost.values())} of {counts['gold_spans']} gold spans cannot be "
            f"trained on ({detail}), {where}.",
            *(text for fate, text in hints.items() if fate in lost),
            f"Counts so far: nlp.get_pipe({self.name!r}).stats.",
        ]
        warnings.warn(" ".join(parts), stacklevel=3)

    def _reference_spans(self, doc: Doc) -> Sequence[Span]:
        return get_spans(doc, self.target_span_getter)

    def gold_tags(self, example: Example, counts: Optional[Dict[str, int]] = None) -> numpy.ndarray:
        """The tag matrix ``[T, C]`` that training fits for ``example``: its gold spans
        (under ``target_span_getter``) on the predicted doc's tokens, chain ``k * L + l``
        for nesting level k of label l (``spans.bioul.encode_levels``).

        ``counts`` (optional): a dict of ``stats``' keys; the gold spans that cannot be
        trained on are added to it by fate. Public for debugging and benchmarks.
        """
        if counts is None:
            counts = _new_gold_counts()
        spans = self._reference_spans(example.reference)
        counts["gold_spans"] += len(spans)
        label_ids = {label: i for i, label in enumerate(self.labels)}
        known = [s for s in spans if s.label_ in label_ids]
        counts["unknown_label"] += len(spans) - len(known)
        aligned = example.get_aligned_spans_y2x(known, allow_overlap=True)
        counts["misaligned"] += len(known) - len(aligned)
        triples = [(label_ids[s.label_], s.start, s.end) for s in aligned]
        tags, crossing, too_deep = encode_levels(
            triples, len(example.predicted), len(label_ids), self.nesting_depth
        )
        counts["same_label_crossing"] += len(crossing)
        counts["nested_too_deep"] += len(too_deep)
        return tags

    def _batch_gold_tags(self, examples: List[Example], emissions: Emissions) -> numpy.ndarray:
        """Gold tags of a batch, padded like the emissions: ``[N, T, C]``; counted in ``stats``."""
        em_xp, lengths = emissions
        n_batch, n_time, n_chains, _ = em_xp.shape
        gold = numpy.zeros((n_batch, n_time, n_chains), dtype="int64")
        for i, eg in enumerate(examples):
            gold[i, : lengths[i]] = self.gold_tags(eg, self.stats)
        self._warn_lost_gold(self.stats, "in the batches trained on so far")
        return gold

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "CrfNer.update")
        docs = [eg.predicted for eg in examples]
        if not any(len(doc) for doc in docs):
            return losses
        set_dropout_rate(self.model, drop)
        emissions, backprop = self.model.begin_update(docs)
        gold = self._batch_gold_tags(examples, emissions)
        loss, d_emissions = tagger_loss(self.model, emissions, gold, self.mode, update_params=True)
        backprop(d_emissions)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def get_loss(self, examples: Iterable[Example], scores: Emissions) -> Tuple[float, Any]:
        """Loss (per gold token over the batch) and its gradient w.r.t. the emissions."""
        examples = list(examples)
        gold = self._batch_gold_tags(examples, scores)
        return tagger_loss(self.model, scores, gold, self.mode, update_params=False)

    # -------------------------------------------------------------- inference
    def predict(self, docs: Iterable[Doc]) -> List[DocPrediction]:
        """Spans and confidences of each doc (see ``DocPrediction``)."""
        docs = list(docs)
        if not docs:
            return []
        if not any(len(doc) for doc in docs):
            empty = numpy.zeros((0, 3), dtype="int64")
            return [(empty, numpy.zeros((0,), dtype="float32")) for _ in docs]
        return self.decode(self.model.predict(docs))

    def decode(self, emissions: Emissions) -> List[DocPrediction]:
        """Decode emissions already computed by ``self.model.predict(docs)``, as ``predict``
        does; public so that benchmarks and tests can time or inspect decoding alone."""
        spans, conf = tagger_decode(self.model, emissions, self.mode)
        n_labels = len(self.labels)
        n_docs = len(emissions[1])
        # Within each doc, order spans by position (then label), as readers expect.
        doc, label, start, end = spans[:, 0], spans[:, 1] % n_labels, spans[:, 2], spans[:, 3]
        order = numpy.lexsort((label, end, start, doc))
        spans = numpy.stack([doc, label, start, end], axis=1)[order]
        conf = conf[order]
        per_doc = spans_per_doc(spans, n_docs)
        bounds = numpy.cumsum([0] + [len(s) for s in per_doc])
        return [(s[:, 1:], conf[bounds[i] : bounds[i + 1]]) for i, s in enumerate(per_doc)]

    def set_annotations(self, docs: Iterable[Doc], predictions: List[DocPrediction]) -> None:
        labels = self.labels
        threshold = self.cfg["confidence_threshold"]
        for doc, (spans, conf) in zip(docs, predictions):
            keep = conf >= threshold
            spans, conf = spans[keep], conf[keep]
            if self.cfg.get("document_consistency"):
                spans, conf = propagate_within_doc([t.text for t in doc], spans, conf)
            found = [Span(doc, int(s), int(e), label=labels[lab]) for lab, s, e in spans]
            for target in self.cfg["span_setter"]:
                if target == "ents":
                    doc.ents = self._merge_ents(doc, found, conf)
                elif target == "*":
                    for i, label in enumerate(labels):
                        sel = spans[:, 0] == i
                        group = [sp for sp, on in zip(found, sel) if on]
                        doc.spans[label] = SpanGroup(
                            doc, name=label, spans=group, attrs={"scores": conf[sel]}
                        )
                else:
                    doc.spans[target] = SpanGroup(
                        doc, name=target, spans=found, attrs={"scores": conf.copy()}
                    )

    def _merge_ents(self, doc: Doc, found: List[Span], conf: numpy.ndarray) -> List[Span]:
        """Our spans for ``doc.ents`` by the package's one rule (``spans.selection``);
        entities already on the doc with labels of other components stay where nothing of
        ours overlaps them."""
        ents = select_longest_first(found, conf, n_tokens=len(doc))
        taken = numpy.zeros(len(doc), dtype=bool)
        for ent in ents:
            taken[ent.start : ent.end] = True
        ours = set(self.labels)
        for ent in doc.ents:
            if ent.label_ not in ours and not taken[ent.start : ent.end].any():
                taken[ent.start : ent.end] = True
                ents.append(ent)
        return sorted(ents, key=lambda s: (s.start, s.end))

    # ---------------------------------------------------------------- scoring
    def score(self, examples: Iterable[Example], **kwargs) -> Dict[str, Any]:
        validate_examples(examples, "CrfNer.score")
        kwargs.update(
            span_setter=self.span_setter,
            target_span_getter=self.target_span_getter,
            labels=self.labels,
        )
        if self.scorer is None:
            raise ValueError(f"{self.name!r} has no scorer (scorer = null in its config)")
        return self.scorer(examples, **kwargs)

    # ---------------------------------------------------------- serialisation
    def _save_layer_dims(self) -> None:
        self.cfg["torch_layer_dims"] = torch_layer_dims(self.model)

    def _restore_cfg(self, saved: Dict[str, Any]) -> None:
        """Take back what training learnt (labels, layer widths). Options such as
        ``span_setter`` or ``mode`` come from the config, so overrides at load time work."""
        self.cfg["labels"] = list(saved.get("labels", self.cfg["labels"]))
        self.cfg["torch_layer_dims"] = saved.get("torch_layer_dims", {})
        # The weights are shaped by the depth they were trained with, so that one wins.
        trained_depth = saved.get("nesting_depth", 1)
        if trained_depth != self.cfg["nesting_depth"]:
            warnings.warn(
                f"[{self.name}] the saved model was trained with nesting_depth={trained_depth}; "
                f"using it instead of the configured {self.cfg['nesting_depth']}."
            )
            self.cfg["nesting_depth"] = trained_depth
        for label in self.cfg["labels"]:
            self.vocab.strings.add(label)

    def _prepare_model_for_weights(self) -> None:
        """Build the torch layers from the saved dims so the weights have a place to go."""
        head = self._head_model()
        if head.maybe_get_dim("nL") is None and self.labels:
            head.set_dim("nL", len(self.labels))
        if head.maybe_get_dim("nD") is None:
            head.set_dim("nD", self.nesting_depth)
        if self.cfg.get("torch_layer_dims"):
            build_torch_layers(self.model, self.cfg["torch_layer_dims"])

    def record_precision(self) -> None:
        """Write the transformer's precision, as it runs in this process, into
        ``nlp.meta["spacy_crf_ner"]["precision"]`` (``transformer.precision``)."""
        ref = _PIPELINE_OF.get(self)
        nlp = ref() if ref is not None else None
        if nlp is not None:
            record_precision(nlp, [self.model])

    def to_bytes(self, *, exclude=tuple()) -> bytes:
        self._save_layer_dims()
        return super().to_bytes(exclude=exclude)

    def to_disk(self, path, *, exclude=tuple()) -> None:
        self._save_layer_dims()
        super().to_disk(path, exclude=exclude)

    def from_bytes(self, bytes_data: bytes, *, exclude=tuple()) -> "CrfNer":
        msg = srsly.msgpack_loads(bytes_data)
        if "cfg" in msg and "cfg" not in exclude:
            self._restore_cfg(srsly.json_loads(msg["cfg"]))
        if "vocab" in msg and "vocab" not in exclude:
            self.vocab.from_bytes(msg["vocab"], exclude=exclude)
        if "model" not in exclude:
            self._prepare_model_for_weights()
            self._load_model_bytes(msg["model"])
        self.record_precision()
        return self

    def from_disk(self, path, *, exclude=tuple()) -> "CrfNer":
        def load_cfg(p):
            self._restore_cfg(srsly.read_json(p))

        def load_model(p):
            self._prepare_model_for_weights()
            with open(p, "rb") as file_:
                self._load_model_bytes(file_.read())

        deserialize = {
            "vocab": lambda p: self.vocab.from_disk(p, exclude=exclude),
            "cfg": load_cfg,
            "model": load_model,
        }
        util.from_disk(path, deserialize, exclude)
        self.record_precision()
        return self

    def _load_model_bytes(self, data: bytes) -> None:
        try:
            self.model.from_bytes(data)
        except AttributeError:
            raise ValueError(Errors.E149) from None
