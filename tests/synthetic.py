"""A small synthetic clinical-style corpus with overlapping entities of different labels.

"breast cancer" is a DISEASE that contains the ANATOMY "breast"; DRUG entities stand alone.
Used by the training tests: enough regularity to be learnt in seconds, with overlaps that a
single BIOUL chain (or ``doc.ents``) cannot hold.
"""
import random
from typing import List, Tuple

from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example

from spacy_crf_ner.data.brackets import parse_brackets

ANATOMY = ["breast", "lung", "colon", "liver", "skin", "prostate", "kidney"]
DISEASE_HEAD = ["cancer", "carcinoma", "tumour", "metastasis", "lesion"]
DRUG = ["aspirin", "tamoxifen", "metformin", "paracetamol", "cisplatin"]
TEMPLATES = [
    "The patient has {anat} {dis} and takes {drug} daily .",
    "No sign of {anat} {dis} was found on imaging .",
    "{Drug} was stopped because of {anat} pain .",
    "History of {anat} {dis} treated with {drug} in 2019 .",
    "She reports {anat} pain since last week .",
    "Known {anat} {dis} ; {drug} started today .",
]

Entity = Tuple[int, int, str]


def make_text(rng: random.Random) -> Tuple[str, List[Entity]]:
    template = rng.choice(TEMPLATES)
    anat, dis, drug = rng.choice(ANATOMY), rng.choice(DISEASE_HEAD), rng.choice(DRUG)
    text, ents, pos = "", [], 0
    parts = template.replace("{", "\x00{").replace("}", "}\x00").split("\x00")
    anat_start = None
    for part in parts:
        if part == "{anat}":
            anat_start = len(text)
            text += anat
            ents.append((anat_start, len(text), "ANATOMY"))
        elif part == "{dis}":
            text += dis
            ents.append((anat_start, len(text), "DISEASE"))
        elif part in ("{drug}", "{Drug}"):
            start = len(text)
            text += drug.capitalize() if part == "{Drug}" else drug
            ents.append((start, len(text), "DRUG"))
        else:
            text += part
    return text, sorted(ents)


def make_corpus(n_docs: int, seed: int = 0) -> List[Tuple[str, List[Entity]]]:
    rng = random.Random(seed)
    return [make_text(rng) for _ in range(n_docs)]


def make_examples(nlp: Language, n_docs: int, seed: int = 0, key: str = "sc") -> List[Example]:
    """Examples whose reference docs carry all entities in ``doc.spans[key]`` and the
    non-overlapping ones (ANATOMY, DRUG) in ``doc.ents``."""
    examples = []
    for text, ents in make_corpus(n_docs, seed):
        ref = nlp.make_doc(text)
        spans = [ref.char_span(s, e, label=label) for s, e, label in ents]
        assert all(span is not None for span in spans)
        ref.spans[key] = spans
        ref.ents = [s for s in spans if s.label_ != "DISEASE"]
        examples.append(Example(nlp.make_doc(text), ref))
    return examples


def train(nlp: Language, examples: List[Example], epochs: int, batch_size: int = 8, seed: int = 0,
          drop: float = 0.1):
    rng = random.Random(seed)
    optimizer = nlp.initialize(lambda: examples)
    examples = list(examples)
    losses = {}
    for _ in range(epochs):
        rng.shuffle(examples)
        for i in range(0, len(examples), batch_size):
            nlp.update(examples[i : i + batch_size], sgd=optimizer, losses=losses, drop=drop)
    return losses


def span_set(doc: Doc, key: str = "sc"):
    return {(s.start_char, s.end_char, s.label_) for s in doc.spans[key]}


# ----------------------------------------------------------- nested, same label
# Brackets mark entities: "[LABEL ...]" may nest, including inside a span of the same label.
NESTED_TEMPLATES = [
    "Known [DISORDER {mod} [DISORDER {organ} {dis}]] since 2015 .",
    "Admitted for [DISORDER [DISORDER {dis2}] secondary to [DISORDER {organ} {dis}]] .",
    "No [DISORDER {organ} {dis}] on the last scan .",
    "Mass in the [ANATOMY {part} of the [ANATOMY {side} {organ2}]] , takes [DRUG {drug}] .",
    "Pain in the [ANATOMY {side} {organ2}] treated with [DRUG {drug}] .",
    "History of [DISORDER {dis2}] and [DISORDER {mod} [DISORDER {organ} {dis}]] .",
]
NESTED_WORDS = {
    "mod": ["chronic", "acute", "severe", "metastatic", "end-stage"],
    "organ": ["kidney", "liver", "heart", "lung", "bowel"],
    "dis": ["disease", "failure", "injury", "cancer", "infection"],
    "dis2": ["diabetes", "sepsis", "hypertension", "cirrhosis", "lupus"],
    "part": ["upper lobe", "lower pole", "apex", "base", "left border"],
    "side": ["left", "right"],
    "organ2": ["lung", "kidney", "breast", "ovary"],
    "drug": ["aspirin", "heparin", "insulin", "tamoxifen"],
}


def make_nested_corpus(n_docs: int, seed: int = 0) -> List[Tuple[str, List[Entity]]]:
    """Clinical-style sentences where DISORDER and ANATOMY spans nest inside spans of the
    same label (two levels), mixed with flat ones."""
    rng = random.Random(seed)
    corpus = []
    for _ in range(n_docs):
        marked = rng.choice(NESTED_TEMPLATES)
        for slot, words in NESTED_WORDS.items():
            marked = marked.replace("{" + slot + "}", rng.choice(words))
        corpus.append(parse_brackets(marked))
    return corpus


def make_nested_examples(nlp: Language, n_docs: int, seed: int = 0) -> List[Example]:
    examples = []
    for text, ents in make_nested_corpus(n_docs, seed):
        ref = nlp.make_doc(text)
        spans = [ref.char_span(s, e, label=label) for s, e, label in ents]
        assert all(span is not None for span in spans)
        ref.spans["sc"] = spans
        examples.append(Example(nlp.make_doc(text), ref))
    return examples


def split_by_nesting(spans):
    """(outer, inner) sets of (start, end, label): inner = inside another span of its label."""
    spans = set(spans)
    inner = {
        s for s in spans
        if any(o != s and o[2] == s[2] and o[0] <= s[0] and s[1] <= o[1] for o in spans)
    }
    return spans - inner, inner
