"""Preparing a dataset: tfds' nested progress bars stay out of logs, a prepared dataset is reused silently."""

import io

import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.core.utils import tqdm_utils

import keras_openseg.datasets.openseg_shapes  # noqa: F401  (registers openseg_shapes)
from keras_openseg.data.dataset_preparation import download_and_prepare
from keras_openseg.data.dataset_preparation import tfds_progress_bars

pytestmark = pytest.mark.backend_independent


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bars_only_on_a_terminal():
    before = tqdm_utils._active
    with tfds_progress_bars(io.StringIO()):  # a log file or a pipe: no bars, hence no cursor-up escapes
        assert tqdm_utils._active is False
    assert tqdm_utils._active == before
    with tfds_progress_bars(Terminal()):
        assert tqdm_utils._active == before


def test_prepares_once_then_reuses(tmp_path, capsys):
    builder = download_and_prepare(tfds.builder("openseg_shapes/tiny", data_dir=tmp_path))
    first = capsys.readouterr().out
    assert "preparing openseg_shapes/tiny" in first and "prepared in" in first
    assert "\x1b[A" not in first
    assert builder.info.splits["train"].num_examples > 0
    download_and_prepare(tfds.builder("openseg_shapes/tiny", data_dir=tmp_path))
    assert capsys.readouterr().out == ""
