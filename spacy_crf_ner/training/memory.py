"""Opt-in: trade speed for a smaller process, ``spacy_crf_ner.malloc_mmap_threshold.v1``.

glibc's malloc serves large blocks with ``mmap`` (given back to the system when freed) until
the first such block is freed; from then on it raises its threshold to that block's size
(up to 32 MB) and serves smaller blocks from the heap, which keeps what it once held.
Training a transformer frees and re-allocates tensors of a few MB in shapes that change with
every batch, so the process's resident size climbs well above what one step needs. A fixed
128 kB threshold keeps it close to that, but every large allocation then costs fresh pages,
so a step is slower: use it where memory is the limit (figures in BENCHMARKS.md, "Design
figures").

It is a callback for ``[nlp.after_pipeline_creation]``, so it acts in ``spacy train`` and in
``spacy.load`` of a pipeline whose config has it, and nowhere else (not at import). It changes
a process-wide setting; on a system without glibc it does nothing.
"""
import ctypes
import logging
import sys
from typing import Callable

from spacy.language import Language
from spacy.util import registry

logger = logging.getLogger("spacy_crf_ner")

M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
MAX_THRESHOLD = 32 * 1024 * 1024  # glibc refuses larger values (HEAP_MAX_SIZE / 2 on 64 bits)


def _check_threshold(threshold: int) -> None:
    if not 0 < int(threshold) <= MAX_THRESHOLD:
        raise ValueError(f"threshold must be in 1..{MAX_THRESHOLD} bytes, got {threshold}")


def set_mmap_threshold(threshold: int) -> bool:
    """Serve every block of at least ``threshold`` bytes with mmap, for good. Returns whether
    glibc took the setting (False off Linux/glibc)."""
    _check_threshold(threshold)
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc: nothing to do
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, int(threshold)) == 1


def make_malloc_mmap_threshold(threshold: int = 131072) -> Callable[[Language], Language]:
    """``[nlp.after_pipeline_creation]`` callback: fix glibc's mmap threshold at ``threshold``
    bytes (default 128 kB, glibc's own starting value) so that freed tensors go back to the
    system instead of fragmenting the heap."""
    _check_threshold(threshold)

    def malloc_mmap_threshold(nlp: Language) -> Language:
        if set_mmap_threshold(threshold):
            logger.debug("glibc mmap threshold fixed at %d bytes", threshold)
        else:
            logger.debug("mmap threshold not set (not glibc)")
        return nlp

    return malloc_mmap_threshold


registry.callbacks("spacy_crf_ner.malloc_mmap_threshold.v1")(make_malloc_mmap_threshold)
