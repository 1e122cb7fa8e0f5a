"""Suite-wide options. ``pytest --gpu-id N`` runs the in-process tests with spaCy and Thinc on
GPU N (``spacy.require_gpu``), so that device placement bugs show up; the default is the CPU."""
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
