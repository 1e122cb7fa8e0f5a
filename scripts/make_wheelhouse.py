"""Put everything a fresh machine needs to install a packaged model into one folder.

``spacy package`` builds a wheel of the model whose requirements name spacy-crf-ner (and
spacy-transformers when the pipeline uses it). spacy-crf-ner is not on a package index, so
that wheel alone does not install anywhere else. This script copies the model's wheel into
OUTPUT_DIR and builds spacy-crf-ner's own wheel beside it, from this checkout. Then, on any
machine that has the third-party libraries (spaCy, torch, spacy-transformers...):

    pip install --no-index --find-links OUTPUT_DIR <model package name>

(without ``--no-index``, pip fetches whatever third-party library is missing from PyPI and
still takes spacy-crf-ner from the folder).

Usage: python scripts/make_wheelhouse.py MODEL_PACKAGE_DIR OUTPUT_DIR
(MODEL_PACKAGE_DIR: the folder ``spacy package --build wheel`` made, e.g.
packages/en_crf_ner_sample-0.1.0).
"""
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parent.parent
# What building the plugin's wheel reads from the checkout.
SOURCE_FILES = ("setup.cfg", "pyproject.toml", "README.md")


def build_plugin_wheel(output_dir: Path) -> Path:
    """Build spacy-crf-ner's wheel into ``output_dir`` from a copy of the sources: building in
    the checkout would leave an egg-info there that shadows the installed package's metadata
    (its entry points) for any process started in the checkout."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(ROOT / "spacy_crf_ner", src / "spacy_crf_ner",
                        ignore=shutil.ignore_patterns("__pycache__"))
        for name in SOURCE_FILES:
            shutil.copy(ROOT / name, src / name)
        before = set(output_dir.glob("spacy_crf_ner-*.whl"))
        for old in before:
            old.unlink()  # one plugin wheel in the folder: the one built now
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
             "-w", str(output_dir), str(src)],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise SystemExit(f"building spacy-crf-ner's wheel failed:\n{proc.stdout}{proc.stderr}")
    wheels = sorted(output_dir.glob("spacy_crf_ner-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one spacy-crf-ner wheel in {output_dir}, found {wheels}")
    return wheels[0]


def make_wheelhouse(model_package_dir: Path, output_dir: Path) -> List[Path]:
    """Copy the model's wheel and build the plugin's into ``output_dir``; return both."""
    model_wheels = sorted((model_package_dir / "dist").glob("*.whl"))
    if not model_wheels:
        raise SystemExit(
            f"no wheel in {model_package_dir / 'dist'}: run `python -m spacy package` with "
            "`--build wheel` (or `sdist,wheel`) first")
    output_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for wheel in model_wheels:
        shutil.copy(wheel, output_dir / wheel.name)
        copied.append(output_dir / wheel.name)
    return copied + [build_plugin_wheel(output_dir)]


def main(argv: List[str]) -> None:
    if len(argv) != 2:
        raise SystemExit(__doc__)
    model_package_dir, output_dir = Path(argv[0]), Path(argv[1])
    wheels = make_wheelhouse(model_package_dir, output_dir)
    model_name = wheels[0].name.split("-")[0]
    print(f"{output_dir}: " + ", ".join(w.name for w in wheels))
    print(f"install with: pip install --no-index --find-links {output_dir} {model_name}")


if __name__ == "__main__":
    main(sys.argv[1:])
