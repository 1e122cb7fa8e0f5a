"""bench/long_corpus.py: long documents laid end to end from short ones, every annotation
moved with its text."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("long_corpus", ROOT / "bench" / "long_corpus.py")
long_corpus = importlib.util.module_from_spec(spec)
spec.loader.exec_module(long_corpus)


def t_lines(folder: Path):
    """(label, covered text) of every T line, checked against the .txt's characters."""
    found = []
    for ann in sorted(folder.glob("*.ann")):
        text = ann.with_suffix(".txt").read_text(encoding="utf8")
        ids = set()
        for line in ann.read_text(encoding="utf8").splitlines():
            if line.startswith("T"):
                tid, label_offsets, covered = line.split("\t")
                label, offsets = label_offsets.split(" ", 1)
                pieces = [text[int(a):int(b)] for a, b in
                          (frag.split() for frag in offsets.split(";"))]
                assert " ".join(pieces) == covered or "".join(pieces) == covered, line
                ids.add(tid)
                found.append((label, covered))
            elif line.startswith("N"):
                assert line.split("\t")[1].split(" ")[1] in ids  # refers to a T of its doc
    return found


def test_long_documents_keep_every_annotation(tmp_path, monkeypatch):
    source = ROOT / "assets" / "sample"
    monkeypatch.setattr(long_corpus, "LONG_WORDS", (100, 300))  # the sample notes are short
    stats = long_corpus.build(source, tmp_path)
    for split in ("train", "dev", "test"):
        assert sorted(t_lines(tmp_path / split)) == sorted(t_lines(source / split))
        assert stats[split]["words"] == sum(
            len(p.read_text(encoding="utf8").split()) for p in (source / split).glob("*.txt"))
    assert stats["train"]["long_docs"] >= 2
    assert 0 < stats["train"]["docs"] < len(list((source / "train").glob("*.txt")))
    # deterministic: the same corpus twice
    again = long_corpus.build(source, tmp_path / "again")
    assert again == stats
