"""evaluate() with a real tiny OpenSegModel: its numbers equal metrics computed directly from model.segment."""

import keras
import numpy as np
import pytest
from fake_openseg_model import EXAMPLES
from fake_openseg_model import dataset_of

from keras_openseg.evaluation import GroundingMeanIoU
from keras_openseg.evaluation import MeanIoU
from keras_openseg.evaluation import class_queries
from keras_openseg.evaluation import embed_class_queries
from keras_openseg.evaluation import evaluate

models = pytest.importorskip("keras_openseg.models")
keras_hub = pytest.importorskip("keras_hub")


class RandomTextEmbedder:
    embedding_dim = 8

    def embed(self, texts, templates=None):
        vectors = np.random.default_rng(len(texts)).normal(size=(len(texts), 8)).astype("float32")
        return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


@pytest.mark.slow
def test_tiny_openseg_model_end_to_end():
    keras.utils.set_random_seed(1)
    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[8], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 8, 8, 8],
        stackwise_num_blocks=[1, 1, 1, 1], stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block_vd",
        image_shape=(None, None, 3),
    )  # fmt: skip
    backbone = models.OpenSegBackbone(
        encoder, num_queries=4, hidden_dim=16, embedding_dim=8, decoder_heads=2, decoder_layers=1, head_convs=1
    )
    model = models.OpenSegModel(backbone, text_embedder=RandomTextEmbedder())
    class_names = ["cat", "dog", "grass"]
    results = evaluate(model, dataset_of(EXAMPLES), class_names, batch_size=2, progress=False)

    text_embeddings, name_valid = embed_class_queries(model.text_embedder, class_queries(class_names))
    images = [example["image"] for example in EXAMPLES]
    outputs = model.segment(images, text_embeddings=text_embeddings, name_valid=name_valid)
    miou, grounding = MeanIoU(3), GroundingMeanIoU(3)
    for example, labels, logits in zip(EXAMPLES, outputs["labels"], outputs["logits"]):
        y_true = example["semantic"][..., 0]
        miou.update_state(y_true, labels)
        grounding.update_state(y_true[None], logits[None])
    assert results["miou"] == pytest.approx(miou.result())
    assert results["grounding_miou"] == pytest.approx(grounding.result())
    assert results["grounding_miou"] >= results["miou"] - 0.2  # fewer queries rarely hurt much
    assert results["num_proposals"] == 4 and results["num_segments"] == 4
    assert all(0.0 <= results[f"recall@{t}"] <= 1.0 for t in (0.5, 0.7, 0.9))
