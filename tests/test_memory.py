"""spacy_crf_ner.malloc_mmap_threshold.v1: freed blocks go back to the system."""
import subprocess
import sys
import textwrap

import pytest
import spacy

from spacy_crf_ner.training.memory import set_mmap_threshold

# In a fresh process: free a 24 MB block (glibc then raises its mmap threshold to 24 MB and
# its trim threshold to 48 MB), allocate and touch a 20 MB block, free it, and print how much
# of it the process still holds.
PROBE = textwrap.dedent("""
    import sys
    import numpy
    def rss_mb():
        with open("/proc/self/status") as f:
            return int(f.read().split("VmRSS:")[1].split()[0]) / 1024
    if sys.argv[1] == "fixed":
        import spacy
        callback = {"@callbacks": "spacy_crf_ner.malloc_mmap_threshold.v1", "threshold": 131072}
        spacy.blank("en", config={"nlp": {"after_pipeline_creation": callback}})
    big = numpy.ones(3 * 1024 * 1024)  # 24 MB
    del big
    base = rss_mb()
    block = numpy.ones(int(2.5 * 1024 * 1024))  # 20 MB, every page touched
    del block
    print(rss_mb() - base)
""")


def held_after_free(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return float(out.stdout.split()[-1])


def test_fixed_threshold_gives_freed_blocks_back():
    if not sys.platform.startswith("linux"):  # no glibc: the callback must do nothing
        assert set_mmap_threshold(131072) is False
        return
    assert held_after_free("default") > 15  # glibc's adaptive threshold keeps the 20 MB
    assert held_after_free("fixed") < 5  # the config callback makes it go back at once


def test_bad_threshold_is_refused():
    with pytest.raises(ValueError, match="threshold"):
        set_mmap_threshold(0)
    with pytest.raises(ValueError, match="threshold"):
        spacy.registry.callbacks.get("spacy_crf_ner.malloc_mmap_threshold.v1")(64 * 1024 * 1024)
