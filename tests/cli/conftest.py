"""Fixtures of the command-line tests: tiny presets saved to disk, the tiny shapes data, image files.

The presets reuse `tests/models/tiny_openseg.py` (the tests' tiny architecture); the text embedder is a
one-layer BERT on a ten-word vocabulary, so `keras-openseg segment --queries ...` embeds real strings offline.
"""

import pathlib
import sys

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "models"))

import keras_openseg.datasets.openseg_shapes  # noqa: E402, F401  (registers openseg_shapes)

WORDS = ["a", "cat", "dog", "puppy", "photo", "of", "the", "grass", "sky", "."]


def tiny_text_embedder(embedding_dim):
    from tiny_openseg import bert_text_embedder

    return bert_text_embedder(WORDS, embedding_dim, sequence_length=16)


@pytest.fixture(scope="session")
def model_preset(tmp_path_factory):
    """A saved tiny OpenSegModel preset with its text embedder."""
    from tiny_openseg import EMBEDDING_DIM
    from tiny_openseg import tiny_model

    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("presets") / "model"
    tiny_model(text_embedder=tiny_text_embedder(EMBEDDING_DIM)).save_to_preset(str(path))
    return str(path)


@pytest.fixture(scope="session")
def teacher_preset(tmp_path_factory):
    """A saved tiny OpenSegTeacher preset."""
    from tiny_openseg import tiny_teacher

    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("presets") / "teacher"
    tiny_teacher().save_to_preset(str(path))
    return str(path)


@pytest.fixture(scope="session")
def shapes_data_dir(tmp_path_factory):
    """A tfds data dir with `openseg_shapes/tiny` built (seconds)."""
    data_dir = tmp_path_factory.mktemp("tfds")
    tfds.builder("openseg_shapes/tiny", data_dir=data_dir).download_and_prepare()
    return str(data_dir)


@pytest.fixture()
def image_files(tmp_path):
    """Two PNG files of different odd sizes."""
    rng = np.random.default_rng(0)
    paths = []
    for index, size in enumerate(((37, 45), (50, 29))):
        path = tmp_path / f"image{index}.png"
        Image.fromarray(rng.integers(0, 256, size + (3,)).astype(np.uint8)).save(path)
        paths.append(str(path))
    return paths
