"""Print the word count of a split's texts: tokens of spaCy's English tokenizer
(``spacy.blank("en")``), the same tokenizer all three systems use. Every system's words/s is
this one number divided by its time, so throughputs are comparable.

    python bench/systems/words.py DATA/test   ->   {"docs": 100, "words": 24000, "chars": ...}
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402


def main() -> None:
    import spacy

    nlp = spacy.blank("en")
    docs = common.read_split(Path(sys.argv[1]))
    words = sum(len(nlp.make_doc(text)) for _, text in docs)
    chars = sum(len(text) for _, text in docs)
    print(json.dumps({"docs": len(docs), "words": words, "chars": chars}))


if __name__ == "__main__":
    main()
