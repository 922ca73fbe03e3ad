"""A fake OpenSeg model and tiny tf.data splits for the evaluation tests.

The fake model reads its answer from the image: channel 0 holds 10 x the winning query index (its logits are
-(value / 10 - q)^2, so the nearest query wins), channel 1 holds 10 x (proposal index + 1) where a proposal is
on (within 5).
"""

import keras
import numpy as np
import tensorflow as tf

NUM_PROPOSALS = 3


class FakeTextEmbedder:
    def __init__(self):
        self.calls = []

    def embed(self, texts, templates=None):
        self.calls.append((list(texts), templates))
        return np.ones((len(texts), 4), np.float32) / 2.0


def _fake_outputs(image, num_queries):
    """Logits [Q, H, W] and mask logits [N, H, W] written in one image (see the module docstring)."""
    image = np.asarray(image, np.float32)
    queries = np.arange(num_queries, dtype=np.float32)[:, None, None]
    logits = -((image[None, :, :, 0] / 10.0 - queries) ** 2)
    proposal_ids = np.arange(1, NUM_PROPOSALS + 1, dtype=np.float32)[:, None, None]
    on = np.abs(image[None, :, :, 1] - 10.0 * proposal_ids) < 5.0
    return logits, np.where(on, 10.0, -10.0).astype(np.float32)


class FakeModel:
    """The `OpenSegModel.segment` contract: a list of images in, per-image arrays at each image's size out."""

    def __init__(self):
        self.text_embedder = FakeTextEmbedder()
        self.segment_calls = []

    def segment(self, images, text_embeddings=None, name_valid=None, use_proposals=True, return_mask_logits=False):
        self.segment_calls.append(
            {"shapes": [image.shape for image in images], "text_embeddings": text_embeddings,
             "name_valid": name_valid, "use_proposals": use_proposals}
        )  # fmt: skip
        logits, mask_logits = zip(*[_fake_outputs(image, text_embeddings.shape[0]) for image in images])
        outputs = {"logits": list(logits), "labels": [np.argmax(x, axis=0).astype(np.int32) for x in logits]}
        if return_mask_logits:
            outputs["mask_logits"] = list(mask_logits)
        return outputs


class FakeBackbone:
    def predict_on_batch(self, inputs):
        # The backbone's inputs: `{"images", "padding_mask"}` (as `ImageCanvas.inputs` gives) or the images.
        canvas = inputs["images"] if isinstance(inputs, dict) else inputs
        mask_logits = [_fake_outputs(image, 1)[1] for image in canvas]
        return {"mask_logits": keras.ops.convert_to_tensor(np.stack(mask_logits))}


class FakeModelWithoutMaskLogits(FakeModel):
    """A `segment` that cannot return its mask logits: the evaluator runs the backbone for them."""

    backbone = FakeBackbone()
    preprocessor = None

    def segment(self, images, text_embeddings=None, name_valid=None, use_proposals=True):
        return super().segment(images, text_embeddings, name_valid, use_proposals)


def example(semantic, predicted, proposals, panoptic_ids, segments):
    semantic = np.array(semantic, np.uint16)
    image = np.zeros(semantic.shape + (3,), np.uint8)
    image[..., 0] = 10 * np.array(predicted)
    image[..., 1] = 10 * np.array(proposals)
    ids = np.array(panoptic_ids)
    panoptic = np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)
    return {
        "image": image,
        "semantic": semantic[..., None],
        "panoptic_image": panoptic,
        "segments": {"id": np.array([s[0] for s in segments], np.int64),
                     "is_crowd": np.array([s[1] for s in segments], bool)},
    }  # fmt: skip


EXAMPLES = [
    example(  # 4 x 4: class ids 0, 1, 2, ignore 255; segments 1, 2, 3 (crowd); void bottom-right.
        semantic=[[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255], [2, 2, 255, 255]],
        predicted=[[0, 1, 1, 1], [0, 0, 1, 1], [2, 0, 1, 0], [2, 2, 0, 0]],
        proposals=[[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 2, 2], [3, 3, 0, 0]],
        panoptic_ids=[[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 0, 0], [3, 3, 0, 0]],
        segments=[(1, False), (2, False), (3, True)],
    ),
    example(  # 2 x 6: classes 1 and 2 only; segments 5 and 7.
        semantic=[[1, 1, 1, 2, 2, 2], [1, 1, 1, 2, 2, 2]],
        predicted=[[1, 1, 0, 2, 2, 2], [1, 1, 1, 2, 2, 0]],
        proposals=[[1, 1, 2, 2, 2, 2], [1, 1, 2, 2, 2, 2]],
        panoptic_ids=[[5, 5, 5, 7, 7, 7], [5, 5, 5, 7, 7, 7]],
        segments=[(5, False), (7, False)],
    ),
]


def dataset_of(examples):
    def generate():
        yield from examples

    signature = {
        "image": tf.TensorSpec([None, None, 3], tf.uint8),
        "semantic": tf.TensorSpec([None, None, 1], tf.uint16),
        "panoptic_image": tf.TensorSpec([None, None, 3], tf.uint8),
        "segments": {"id": tf.TensorSpec([None], tf.int64), "is_crowd": tf.TensorSpec([None], tf.bool)},
    }
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    return dataset.apply(tf.data.experimental.assert_cardinality(len(examples)))
