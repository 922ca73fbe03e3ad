"""Fixtures of the training tests: the tiny shapes data (stand-ins for the text side: training_fakes.py).

On JAX the session also keeps a persistent compilation cache in a temporary folder: the resume test builds
the same tiny model three times, and XLA then compiles its train step once. It is set when this file is
collected, before anything compiles (JAX reads the setting when it first compiles).
"""

import atexit
import shutil
import tempfile

import keras
import pytest
import tensorflow_datasets as tfds

import keras_openseg.datasets.openseg_shapes  # noqa: F401  (registers openseg_shapes)

if keras.backend.backend() == "jax":
    import jax

    _JAX_CACHE = tempfile.mkdtemp(prefix="keras_openseg_jax_cache_")
    atexit.register(shutil.rmtree, _JAX_CACHE, ignore_errors=True)
    jax.config.update("jax_compilation_cache_dir", _JAX_CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


@pytest.fixture(scope="session")
def shapes_data_dir(tmp_path_factory):
    """A tfds data dir with `openseg_shapes/tiny` built (seconds)."""
    data_dir = tmp_path_factory.mktemp("tfds")
    tfds.builder("openseg_shapes/tiny", data_dir=data_dir).download_and_prepare()
    return str(data_dir)
