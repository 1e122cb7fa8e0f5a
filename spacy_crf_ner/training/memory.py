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


def release_free_memory() -> bool:
    """Give the pages glibc holds free back to the system (``malloc_trim(0)``): the top of
    the heap and every free page inside it. Returns whether glibc did it (False elsewhere)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True


def make_release_memory(every_n_steps: int = 10) -> Callable[[Language, dict], None]:
    """``[training.before_update]`` callback: ``malloc_trim`` every ``every_n_steps`` steps.

    A step allocates and frees about a gigabyte of activations in shapes that change with
    every batch, so glibc's heap keeps growing with holes the next step cannot fill (4.0 GB
    after 500 NCBI steps, from 2.1 GB after the first few). Giving the free pages back every
    step keeps the process at what one step needs, but every step then pays for fresh pages
    (~20 % slower on CPU); every 10 steps costs ~2 % and keeps the growth to what 10 steps
    make (BENCHMARKS.md, "Design figures"). On a system without glibc it does nothing."""
    if every_n_steps < 1:
        raise ValueError(f"every_n_steps must be at least 1, got {every_n_steps}")

    def release_memory(nlp: Language, info: dict) -> None:
        step = int(info.get("step", 0))
        if step and step % every_n_steps == 0:
            release_free_memory()

    return release_memory


registry.callbacks("spacy_crf_ner.release_memory.v1")(make_release_memory)
