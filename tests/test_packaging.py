"""`spacy package` of a trained pipeline installs and loads in a fresh virtual environment.

The fresh environment sees the third-party libraries (spaCy, torch, spacy-transformers...)
through a folder of links to this environment's site-packages with spacy-crf-ner left out.
Besides those it gets only the wheelhouse the project's `package` step leaves
(``scripts/make_wheelhouse.py``: the model's wheel beside spacy-crf-ner's), and installs
with the command README.md gives: ``pip install --no-index --find-links WHEELHOUSE NAME``.
So the packaged model only loads if its requirements name spacy-crf-ner and the wheelhouse
holds it. No network is used.
"""
import json
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from pipelines import tiny_transformer_nlp
from synthetic import make_examples, train

ROOT = Path(__file__).resolve().parent.parent
TEXTS = [
    "The patient has lung cancer and takes aspirin daily .",
    "Known skin lesion ; metformin started today .",
]


def run(cmd, **kwargs):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def shared_site_packages(dest: Path) -> Path:
    """Links to everything installed here except spacy-crf-ner itself."""
    dest.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        name = entry.name.lower()
        if name.startswith(("spacy_crf_ner", "spacy-crf-ner", "__editable__")) or name.endswith(".pth"):
            continue
        (dest / entry.name).symlink_to(entry)
    return dest


@pytest.mark.slow
def test_packaged_pipeline_installs_and_loads_in_a_fresh_venv(tmp_path):
    # Set to predict at int8 (opt-in reduced precision): the setting travels in the config
    # and the package predicts exactly what the pipeline did before packaging.
    nlp = tiny_transformer_nlp(tmp_path, transformer_settings={"precision": "int8"})
    train(nlp, make_examples(nlp, 40, seed=5), epochs=8, drop=0.0)
    expected = [sorted((s.start_char, s.end_char, s.label_) for s in d.spans["sc"]) for d in nlp.pipe(TEXTS)]
    assert any(expected), "the trained pipeline should find entities"
    nlp.to_disk(tmp_path / "model")

    packages = tmp_path / "packages"
    packages.mkdir()
    run([sys.executable, "-m", "spacy", "package", tmp_path / "model", packages,
         "--name", "crf_test", "--version", "0.0.1", "--build", "wheel", "--force"])
    pkg_dir = packages / "en_crf_test-0.0.1"
    meta = json.loads((pkg_dir / "meta.json").read_text())
    requirement_names = {r.split(">")[0].split("=")[0].split("<")[0] for r in meta["requirements"]}
    assert {"spacy-crf-ner", "spacy-transformers"} <= requirement_names, meta["requirements"]

    wheelhouse = packages / "wheelhouse"
    out = run([sys.executable, ROOT / "scripts" / "make_wheelhouse.py", pkg_dir, wheelhouse],
              cwd=tmp_path)
    wheels = sorted(p.name for p in wheelhouse.iterdir())
    assert len(wheels) == 2 and wheels[0].startswith("en_crf_test-0.0.1-"), wheels
    assert wheels[1].startswith("spacy_crf_ner-"), wheels
    with zipfile.ZipFile(wheelhouse / wheels[1]) as plugin_wheel:
        assert "spacy_crf_ner/py.typed" in plugin_wheel.namelist()
    install_command = out.strip().splitlines()[-1].split("install with: ", 1)[1]
    assert install_command == f"pip install --no-index --find-links {wheelhouse} en_crf_test"

    env_dir = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    fresh_site = Path(run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    (fresh_site / "shared.pth").write_text(str(shared_site_packages(tmp_path / "shared")) + "\n")
    clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    probe = "import importlib.util as u; print(u.find_spec('spacy_crf_ner') is None)"
    assert run([py, "-c", probe], env=clean_env, cwd=tmp_path).strip() == "True"

    # The README's command, run by the fresh environment's python (it borrows pip).
    run([py, "-m", *install_command.split()[:1], "-q", *install_command.split()[1:]],
        env=clean_env, cwd=tmp_path)
    script = (
        "import json, spacy; nlp = spacy.load('en_crf_test'); "
        "assert nlp.get_pipe('transformer').model.precision == 'int8'; "
        f"docs = list(nlp.pipe({TEXTS!r})); "
        "print(json.dumps([sorted((s.start_char, s.end_char, s.label_) for s in d.spans['sc']) for d in docs]))"
    )
    out = run([py, "-c", script], env=clean_env, cwd=tmp_path)
    got = [[tuple(s) for s in doc] for doc in json.loads(out.strip().splitlines()[-1])]
    assert got == expected
