"""Fixtures of the training tests: the tiny shapes data (stand-ins for the text side: training_fakes.py)."""

import pytest
import tensorflow_datasets as tfds

import keras_openseg.datasets.openseg_shapes  # noqa: F401  (registers openseg_shapes)


@pytest.fixture(scope="session")
def shapes_data_dir(tmp_path_factory):
    """A tfds data dir with `openseg_shapes/tiny` built (seconds)."""
    data_dir = tmp_path_factory.mktemp("tfds")
    tfds.builder("openseg_shapes/tiny", data_dir=data_dir).download_and_prepare()
    return str(data_dir)
