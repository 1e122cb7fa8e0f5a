"""Training glue for ``spacy train``: per-group learning rates and a JSONL training log."""
