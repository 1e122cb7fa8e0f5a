"""Suite-wide options. ``pytest --gpu-id N`` runs the in-process tests with spaCy and Thinc on
GPU N (``spacy.require_gpu``), so that device placement bugs show up; the default is the CPU."""
import os

import pytest


def pytest_addoption(parser):
    parser.addoption("--gpu-id", type=int, default=-1,
                     help="run the tests on this GPU (spacy.require_gpu); -1: CPU")


def _select(config) -> None:
    gpu_id = config.getoption("--gpu-id")
    if gpu_id >= 0:
        import spacy

        spacy.require_gpu(gpu_id)


def pytest_configure(config):
    _select(config)  # before any fixture, module-scoped ones included, builds a model


@pytest.fixture(autouse=True)
def _current_device(request):
    """Re-select the GPU after each test: a CLI test run with ``--gpu-id -1`` switches the
    process to the CPU, and neither the next test nor a fixture it builds may inherit that."""
    yield
    _select(request.config)


@pytest.fixture(scope="session")
def spark():
    """One ``local[2]`` SparkSession for the whole run (a JVM takes seconds to start); the
    Python workers run this interpreter. Skipped only outside CI when the ``spark`` extra is
    not installed (``.ci/install`` installs it)."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("pyspark is not installed: pip install -e '.[spark]'")
    from spacy_crf_ner.spark import local_session

    session = local_session("local[2]", app_name="spacy-crf-ner tests", progress=False,
                            **{"spark.ui.enabled": "false",
                               "spark.sql.shuffle.partitions": "2"})
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
