"""`OpenSegModel.segment(queries=...)` takes strings; an array given as `queries` is pointed to `text_embeddings=`.

(The string/array split is what `keras-openseg segment --queries` relies on; issue 14 item 7.)
"""

import pathlib
import sys

import numpy as np
import pytest
from keras import ops

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "models"))

from tiny_openseg import EMBEDDING_DIM  # noqa: E402
from tiny_openseg import FakeTextEmbedder  # noqa: E402
from tiny_openseg import images  # noqa: E402
from tiny_openseg import tiny_model  # noqa: E402


@pytest.mark.parametrize("shape", [(3, EMBEDDING_DIM), (3, 2, EMBEDDING_DIM)])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_an_array_of_queries_says_to_pass_text_embeddings(shape, as_tensor):
    model = tiny_model(text_embedder=FakeTextEmbedder())
    embeddings = np.random.default_rng(0).normal(size=shape).astype("float32")
    queries = ops.convert_to_tensor(embeddings) if as_tensor else embeddings
    with pytest.raises(ValueError, match="text_embeddings="):
        model.segment(images(1), queries=queries)
    # The same arrays given as text_embeddings segment.
    assert model.segment(images(1), text_embeddings=queries)["labels"].shape == (1, 64, 64)
