"""WordEmbeddingTable: build, save/load, ids, tf lookup, and refusal to mix encoders."""

import hashlib

import numpy as np
import pytest

from keras_openseg.text import WordEmbeddingTable

pytestmark = pytest.mark.backend_independent


class FakeTextEmbedder:
    """Deterministic stand-in for TextEmbedder: a vector per string from its hash, counted calls."""

    def __init__(self, identity="fake-mean-8d-000000000000", embedding_dim=8):
        self.identity = identity
        self.embedding_dim = embedding_dim
        self.embedded = []

    def embed(self, texts, templates=None, batch_size=64):
        self.embedded.extend(texts)
        vectors = []
        for text in texts:
            seed = int(hashlib.sha1(f"{self.identity}:{templates}:{text}".encode()).hexdigest()[:8], 16)
            vectors.append(np.random.default_rng(seed).normal(size=self.embedding_dim))
        vectors = np.array(vectors, np.float32).reshape(len(texts), self.embedding_dim)
        return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def test_build_save_load_round_trip(tmp_path):
    embedder = FakeTextEmbedder()
    path = tmp_path / "coco" / "words.npz"
    table = WordEmbeddingTable.build(["cat", "grass", "cat", "", "new york city"], embedder, path=path)
    assert table.words == ["cat", "grass", "new york city"]
    assert len(table) == 3 and table.embedding_dim == 8
    assert table.encoder_id == embedder.identity
    np.testing.assert_allclose(np.linalg.norm(table.embeddings, axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(table.embeddings, embedder.embed(table.words), rtol=1e-6)

    loaded = WordEmbeddingTable.load(path, text_embedder=embedder)
    assert loaded.words == table.words and loaded.encoder_id == table.encoder_id
    np.testing.assert_array_equal(loaded.embeddings, table.embeddings)
    assert loaded.embeddings.dtype == np.float32


def test_ids_and_lookup():
    table = WordEmbeddingTable(["cat", "grass"], np.array([[3.0, 4.0], [0.0, 2.0]]), encoder_id="toy")
    np.testing.assert_allclose(table.embeddings, [[0.6, 0.8], [0.0, 1.0]])  # Rows normalized.
    ids = table.ids(["grass", "dog", "cat"])
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(ids, [1, -1, 0])
    assert table.ids([]).shape == (0,)
    np.testing.assert_allclose(table.lookup(["grass"]), [[0.0, 1.0]])
    with pytest.raises(KeyError, match="dog"):
        table.lookup(["dog"])
    assert "cat" in table and "dog" not in table


def test_static_hash_table_for_tf_data():
    import tensorflow as tf

    table = WordEmbeddingTable(["cat", "grass", "new york city"], np.eye(3, 4), encoder_id="toy")
    lookup = table.static_hash_table()
    ids = lookup.lookup(tf.constant(["new york city", "dog", "cat"]))
    np.testing.assert_array_equal(ids.numpy(), [2, -1, 0])


def test_extend_embeds_only_new_words():
    embedder = FakeTextEmbedder()
    table = WordEmbeddingTable.build(["cat", "grass"], embedder)
    embedder.embedded.clear()
    bigger = table.extend(["grass", "sky", "sky"], embedder)
    assert embedder.embedded == ["sky"]
    assert bigger.words == ["cat", "grass", "sky"]
    np.testing.assert_array_equal(bigger.embeddings[:2], table.embeddings)


def test_another_encoder_is_refused(tmp_path):
    first, second = FakeTextEmbedder("enc-a"), FakeTextEmbedder("enc-b")
    path = tmp_path / "words.npz"
    table = WordEmbeddingTable.build(["cat"], first, path=path)
    with pytest.raises(ValueError, match="enc-a.*not 'enc-b'"):
        table.extend(["dog"], second)
    with pytest.raises(ValueError, match="rebuild"):
        WordEmbeddingTable.load(path, text_embedder=second)
    with pytest.raises(ValueError, match="overwrite=True"):
        WordEmbeddingTable.build(["dog"], second, path=path)
    # Same encoder: the file grows, only the missing word is embedded.
    first.embedded.clear()
    grown = WordEmbeddingTable.build(["cat", "dog"], first, path=path)
    assert first.embedded == ["dog"] and WordEmbeddingTable.load(path).words == ["cat", "dog"]
    np.testing.assert_array_equal(grown.embeddings[0], table.embeddings[0])
    replaced = WordEmbeddingTable.build(["dog"], second, path=path, overwrite=True)
    assert WordEmbeddingTable.load(path).encoder_id == replaced.encoder_id == "enc-b"


def test_templates_are_part_of_the_encoder_id():
    embedder = FakeTextEmbedder("enc-a")
    plain = WordEmbeddingTable.build(["cat"], embedder)
    prompted = WordEmbeddingTable.build(["cat"], embedder, templates="default")
    assert plain.encoder_id == "enc-a" and prompted.encoder_id == "enc-a+templates:default"
    prompted.check_encoder(embedder, templates="default")
    with pytest.raises(ValueError, match="not comparable"):
        prompted.check_encoder(embedder)


def test_bad_tables():
    with pytest.raises(ValueError, match="embeddings"):
        WordEmbeddingTable(["cat", "dog"], np.zeros((3, 4)), encoder_id="toy")
    with pytest.raises(ValueError, match="distinct"):
        WordEmbeddingTable(["cat", "cat"], np.ones((2, 4)), encoder_id="toy")
    with pytest.raises(ValueError, match="encoder_id"):
        WordEmbeddingTable(["cat"], np.ones((1, 4)), encoder_id="")
    with pytest.raises(ValueError, match="list of str"):
        WordEmbeddingTable(["cat"], np.ones((1, 4)), encoder_id="toy").ids("cat")
    with pytest.raises(ValueError, match=".npz"):
        WordEmbeddingTable(["cat"], np.ones((1, 4)), encoder_id="toy").save("words.json")
