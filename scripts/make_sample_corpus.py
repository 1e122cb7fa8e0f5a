"""Write the small sample BRAT corpus in assets/sample (run once; the output is committed).

Short clinical-style notes with three labels: DISORDER, ANATOMY and DRUG. A disorder often
contains an anatomy mention ("carcinoma of the left breast" holds "left breast"), so the
entities overlap across labels, which is what spacy-crf-ner handles and doc.ents cannot.
Deterministic (fixed seed); train/dev/test use disjoint random draws.
"""
import random
import sys
from pathlib import Path

SITES = ["left breast", "right breast", "lung", "right lung", "colon", "liver", "pancreas",
         "prostate", "kidney", "bladder", "thyroid", "stomach", "skin", "left knee",
         "right hip", "spine", "brain", "ovary", "cervix", "oesophagus"]
PROCESS_OF = ["carcinoma of the {site}", "cancer of the {site}", "metastasis to the {site}",
              "tumour of the {site}", "infection of the {site}", "fracture of the {site}"]
PROCESS_ADJ = ["{site} cancer", "{site} carcinoma", "{site} lesion", "{site} infection",
               "{site} adenoma", "{site} cyst"]
DISORDERS = ["hypertension", "type 2 diabetes", "asthma", "atrial fibrillation", "anaemia",
             "depression", "heart failure", "sepsis", "pneumonia", "migraine"]
DRUGS = ["metformin", "tamoxifen", "aspirin", "paracetamol", "cisplatin", "amoxicillin",
         "bisoprolol", "insulin glargine", "salbutamol", "warfarin", "letrozole", "morphine"]
SENTENCES = [
    "The patient was admitted for {disorder} .",
    "History of {disorder} , treated with {drug} .",
    "{Drug} was started for {disorder} .",
    "Imaging shows a {site_only} without abnormality .",
    "She complains of pain in the {site_only} since Monday .",
    "No evidence of {disorder} on the scan .",
    "{Drug} {dose} mg twice daily was continued .",
    "Known {disorder} ; {drug} stopped because of nausea .",
    "Examination of the {site_only} is unremarkable .",
    "Follow-up in three months for {disorder} .",
    "He takes {drug} and {drug2} every morning .",
    "Biopsy confirmed {disorder} .",
]


def fill(template, rng):
    text, ents = "", []
    i = 0
    while i < len(template):
        if template[i] != "{":
            text += template[i]
            i += 1
            continue
        j = template.index("}", i)
        slot = template[i + 1 : j]
        i = j + 1
        start = len(text)
        if slot == "disorder":
            kind = rng.random()
            if kind < 0.35:
                form = rng.choice(PROCESS_OF)
            elif kind < 0.7:
                form = rng.choice(PROCESS_ADJ)
            else:
                form = None
            if form is None:
                text += rng.choice(DISORDERS)
            else:
                site = rng.choice(SITES)
                pre, post = form.split("{site}")
                text += pre
                ents.append((len(text), len(text) + len(site), "ANATOMY"))
                text += site + post
            ents.append((start, len(text), "DISORDER"))
        elif slot == "site_only":
            text += rng.choice(SITES)
            ents.append((start, len(text), "ANATOMY"))
        elif slot in ("drug", "drug2", "Drug"):
            drug = rng.choice(DRUGS)
            text += drug[0].upper() + drug[1:] if slot == "Drug" else drug
            ents.append((start, len(text), "DRUG"))
        elif slot == "dose":
            text += str(rng.choice([5, 10, 20, 50, 100, 500]))
    return text, ents


def make_doc(rng):
    text, ents = "", []
    for n in range(rng.randint(2, 4)):
        sentence, sent_ents = fill(rng.choice(SENTENCES), rng)
        offset = len(text)
        ents += [(s + offset, e + offset, label) for s, e, label in sent_ents]
        text += sentence + ("\n" if n % 2 else " ")
    return text.rstrip() + "\n", ents


def write(folder: Path, n_docs: int, seed: int, prefix: str):
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n_docs):
        text, ents = make_doc(rng)
        name = f"{prefix}-{k:03d}"
        (folder / f"{name}.txt").write_text(text, encoding="utf8")
        lines = [f"T{i + 1}\t{label} {s} {e}\t{text[s:e]}" for i, (s, e, label) in enumerate(sorted(ents))]
        (folder / f"{name}.ann").write_text("\n".join(lines) + "\n", encoding="utf8")


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "assets/sample")
    write(root / "train", 60, seed=1, prefix="note")
    write(root / "dev", 15, seed=2, prefix="note-dev")
    write(root / "test", 20, seed=3, prefix="note-test")
