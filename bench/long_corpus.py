"""A long-document corpus made from a BRAT corpus of short ones (issue 27).

    python bench/long_corpus.py ../shared/data/ncbi-disease bench/work/long-data

Clinical corpora mix short notes with discharge summaries of thousands of words; NCBI's
abstracts are all short (at most ~550 words). For each split, this lays abstracts end to end,
in file order, into documents of 1,000-5,000 words (each one's target drawn at random,
seed 0), separated by a blank line, and leaves about half of the abstracts (drawn at random)
alone, so the corpus has both. The annotations move with their text: offsets shifted, ``T`` and ``N`` ids
renumbered per document (``N`` lines follow their ``T``). Standard library only.
"""
import argparse
import json
import random
import re
import sys
from pathlib import Path
from typing import Dict, List, Tuple

SEPARATOR = "\n\n"
SHORT_SHARE = 0.5
LONG_WORDS = (1000, 5000)
OFFSETS = re.compile(r"(\d+) (\d+)")


def read_pairs(folder: Path) -> List[Tuple[str, str, str]]:
    """(name, text, ann) of every .txt with a .ann beside it, sorted by name."""
    pairs = []
    for txt in sorted(folder.glob("*.txt")):
        ann = txt.with_suffix(".ann")
        if ann.exists():
            with open(txt, encoding="utf8", newline="") as f:
                text = f.read()
            with open(ann, encoding="utf8", newline="") as f:
                pairs.append((txt.stem, text, f.read()))
    return pairs


def shifted_lines(ann: str, offset: int, ids: Dict[str, str], counters: Dict[str, int]
                  ) -> List[str]:
    """The ``T`` and ``N`` lines of ``ann``, offsets moved by ``offset``, ids renumbered."""
    out = []
    for line in ann.splitlines():
        if not line.strip():
            continue
        kind = line[0]
        if kind not in "TN":
            raise ValueError(f"unexpected annotation line (only T and N handled): {line!r}")
        old_id, rest = line.split("\t", 1)
        counters[kind] += 1
        new_id = f"{kind}{counters[kind]}"
        ids[old_id] = new_id
        if kind == "T":
            label_offsets, _, text = rest.partition("\t")
            label, _, offsets = label_offsets.partition(" ")
            offsets = OFFSETS.sub(lambda m: f"{int(m[1]) + offset} {int(m[2]) + offset}",
                                  offsets)
            out.append(f"{new_id}\t{label} {offsets}\t{text}")
        else:  # N<k>\tReference T<j> db:id[\ttext]
            fields = rest.split("\t")
            head = fields[0].split(" ")
            if len(head) >= 2 and head[1] in ids:
                head[1] = ids[head[1]]
            out.append("\t".join([new_id, " ".join(head), *fields[1:]]))
    return out


def build_split(pairs, out: Path, rng: random.Random) -> Dict:
    out.mkdir(parents=True, exist_ok=True)
    docs: List[List[Tuple[str, str, str]]] = []
    current: List[Tuple[str, str, str]] = []
    target = 0
    for pair in pairs:
        if rng.random() < SHORT_SHARE:  # stays a document of its own
            docs.append([pair])
            continue
        if not current:
            target = rng.randint(*LONG_WORDS)
        current.append(pair)
        if sum(len(t.split()) for _, t, _ in current) >= target:
            docs.append(current)
            current = []
    if current:
        docs.append(current)
    lengths = []
    for members in docs:
        texts, lines, offset = [], [], 0
        ids: Dict[str, str] = {}
        counters = {"T": 0, "N": 0}
        for _, text, ann in members:
            lines += shifted_lines(ann, offset, ids, counters)
            texts.append(text)
            offset += len(text) + len(SEPARATOR)
        name = members[0][0] if len(members) == 1 else f"long-{members[0][0]}-{len(members)}"
        text = SEPARATOR.join(texts)
        with open(out / f"{name}.txt", "w", encoding="utf8", newline="") as f:
            f.write(text)
        with open(out / f"{name}.ann", "w", encoding="utf8", newline="") as f:
            f.write("\n".join(lines) + "\n")
        lengths.append(len(text.split()))
    long_docs = [n for n in lengths if n >= LONG_WORDS[0]]
    return {"docs": len(docs), "long_docs": len(long_docs), "words": sum(lengths),
            "words_in_long_docs": sum(long_docs), "longest": max(lengths)}


def build(source: Path, target: Path) -> Dict:
    """Every split of ``source`` (train/dev/test) into ``target``; returns counts per split."""
    rng = random.Random(0)
    return {split: build_split(read_pairs(source / split), target / split, rng)
            for split in ("train", "dev", "test") if (source / split).is_dir()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    args = parser.parse_args()
    json.dump(build(args.source, args.target), sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
