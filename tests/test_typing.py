"""Type checking: mypy is clean on the package, and the public API's types reach users.

Configuration: ``[mypy]`` in setup.cfg (the builders' modules must be fully annotated).
Both runs share one mypy cache, so only the first pays for reading spaCy, Thinc and torch.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

USER_CODE = '''
from typing import List, Tuple
from spacy.tokens import Doc
from thinc.api import Model
from thinc.types import Floats2d
from spacy_crf_ner.transformer.listeners import build_windowed_tok2vec_transformer
from spacy_crf_ner.models.crf_tagger import build_crf_tagger
from spacy_crf_ner.models.text_cnn import build_text_cnn
from spacy_crf_ner.pipeline.crf_ner import CrfNer

def embed(tok2vec: Model[List[Doc], List[Floats2d]]) -> None:
    reveal_type(build_text_cnn(tok2vec))
    reveal_type(build_crf_tagger(build_text_cnn(tok2vec)))
    reveal_type(build_windowed_tok2vec_transformer)
    wrong: Model[List[Doc], List[Floats2d]] = build_crf_tagger(tok2vec)
'''


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("mypy_cache")


def mypy(args, cache, cwd, **env):
    cmd = [sys.executable, "-m", "mypy", "--cache-dir", str(cache), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **env})
    return proc.returncode, proc.stdout + proc.stderr


def test_py_typed_marker_is_shipped():
    assert (ROOT / "spacy_crf_ner" / "py.typed").is_file()
    assert "py.typed" in (ROOT / "setup.cfg").read_text()


@pytest.mark.slow
def test_package_type_checks_clean(mypy_cache):
    code, out = mypy([], mypy_cache, cwd=ROOT)
    assert code == 0, out
    assert "Success: no issues found" in out


@pytest.mark.slow
def test_public_builders_are_typed_for_users(mypy_cache, tmp_path):
    user = tmp_path / "user_code.py"
    user.write_text(USER_CODE)
    code, out = mypy(["--config-file", str(ROOT / "setup.cfg"), str(user)], mypy_cache,
                     cwd=tmp_path, MYPYPATH=str(ROOT))
    out = out.replace("builtins.", "")  # older mypy versions print builtins.list
    revealed = [line for line in out.splitlines() if "Revealed type" in line]
    assert len(revealed) == 3, out
    cnn, tagger, windowed = revealed
    assert "Model[list[spacy.tokens.doc.Doc], list[thinc.types.Floats2d]]" in cnn, cnn
    assert "Model[list[spacy.tokens.doc.Doc], tuple[" in tagger, tagger
    assert "Floats4d" in tagger and "list[int]" in tagger
    assert "-> thinc.model.Model[list[spacy.tokens.doc.Doc], list[thinc.types.Floats2d]]" in windowed, windowed
    # The tagger's output is not a list of vectors: typed, not Any, so this is an error.
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert len(errors) == 1 and "Incompatible types in assignment" in errors[0], out
