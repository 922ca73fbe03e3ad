"""Shared pytest fixtures: the `../shared/data` samples, hypothesis settings, backend-only markers."""

import os
import pathlib

import keras
import pytest

try:
    from hypothesis import settings

    settings.register_profile("keras_openseg", deadline=None, max_examples=25, derandomize=True)
    settings.load_profile("keras_openseg")
except ImportError:  # hypothesis is in the `test` extra; tests that use it import it themselves.
    pass

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(os.environ.get("KERAS_OPENSEG_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data_dir():
    """`../shared/data` beside the repository (real COCO samples, vocabularies); skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"needs the real sample data in {SHARED_DATA} (the `shared/data` folder beside the repository, "
            "or set KERAS_OPENSEG_SHARED_DATA); absent here"
        )
    return SHARED_DATA


def pytest_collection_modifyitems(config, items):
    # Tests that exercise no Keras backend (tfds builders, spaCy text) are marked `backend_independent` and run
    # once, on the TensorFlow backend run, instead of three times. End-to-end runs of backend-agnostic wiring
    # (notebooks, the quick demo, CLI pipelines) are marked `end_to_end("torch", ...)`: they run on the named
    # backends' passes only, because the layers, models, losses and training steps they drive have their own
    # tests on every backend and running each pipeline three times would put CI over its 30 minutes. Set
    # KERAS_OPENSEG_ALL_BACKENDS=1 to run both kinds on every backend (a release check).
    if os.environ.get("KERAS_OPENSEG_ALL_BACKENDS"):
        return
    backend = keras.backend.backend()
    independent = pytest.mark.skip(reason="backend-independent test: runs on the tensorflow backend pass only")
    for item in items:
        if "backend_independent" in item.keywords and backend != "tensorflow":
            item.add_marker(independent)
        marker = item.get_closest_marker("end_to_end")
        if marker is not None and backend not in marker.args:
            where = ", ".join(marker.args)
            why = marker.kwargs.get("covered_by", "its parts are tested on every backend")
            reason = (
                f"end-to-end test: runs on the {where} pass only ({why}; KERAS_OPENSEG_ALL_BACKENDS=1 runs it here)"
            )
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def _restore_xla_flags(monkeypatch):
    """`keras-openseg` on JAX adds XLA:CPU's memory-optimized schedule to `XLA_FLAGS`; tests that call `cli.main`
    must not leave it to the next test or its subprocesses."""
    if "XLA_FLAGS" in os.environ:
        monkeypatch.setenv("XLA_FLAGS", os.environ["XLA_FLAGS"])
    else:
        monkeypatch.delenv("XLA_FLAGS", raising=False)
