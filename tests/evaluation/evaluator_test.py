"""evaluate() on tiny in-memory tf.data splits with a fake model whose predictions are written in the images.

The fake model reads its answer from the image: channel 0 holds 10 x the winning query index (its logits are
-(value / 10 - q)^2, so the nearest query wins), channel 1 holds 10 x (proposal index + 1) where a proposal is
on (within 5). Every expected number below is counted by hand.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_openseg.evaluation import evaluate

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
    def predict_on_batch(self, canvas):
        mask_logits = [_fake_outputs(image, 1)[1] for image in canvas]
        return {"mask_logits": keras.ops.convert_to_tensor(np.stack(mask_logits))}


class FakeModelWithoutMaskLogits(FakeModel):
    """A `segment` that cannot return its mask logits: the evaluator runs the backbone for them."""

    backbone = FakeBackbone()
    preprocessor = None

    def segment(self, images, text_embeddings=None, name_valid=None, use_proposals=True):
        return super().segment(images, text_embeddings, name_valid, use_proposals)


def _example(semantic, predicted, proposals, panoptic_ids, segments):
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
    _example(  # 4 x 4: class ids 0, 1, 2, ignore 255; segments 1, 2, 3 (crowd); void bottom-right.
        semantic=[[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255], [2, 2, 255, 255]],
        predicted=[[0, 1, 1, 1], [0, 0, 1, 1], [2, 0, 1, 0], [2, 2, 0, 0]],
        proposals=[[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 2, 2], [3, 3, 0, 0]],
        panoptic_ids=[[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 0, 0], [3, 3, 0, 0]],
        segments=[(1, False), (2, False), (3, True)],
    ),
    _example(  # 2 x 6: classes 1 and 2 only; segments 5 and 7.
        semantic=[[1, 1, 1, 2, 2, 2], [1, 1, 1, 2, 2, 2]],
        predicted=[[1, 1, 0, 2, 2, 2], [1, 1, 1, 2, 2, 0]],
        proposals=[[1, 1, 2, 2, 2, 2], [1, 1, 2, 2, 2, 2]],
        panoptic_ids=[[5, 5, 5, 7, 7, 7], [5, 5, 5, 7, 7, 7]],
        segments=[(5, False), (7, False)],
    ),
]


def _dataset(examples):
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


def test_metrics_by_hand_with_padding_and_panoptic_recall(capsys):
    model = FakeModel()
    results = evaluate(
        model, _dataset(EXAMPLES), ["cat", "dog", "grass"], batch_size=2,
        held_out_class_names=["grass"], progress=True,
    )  # fmt: skip
    # Full vocabulary. class 0: TP 3, GT 4, predicted 6 -> 3/7; class 1: TP 9, GT 10, predicted 10 -> 9/11;
    # class 2: TP 8, GT 10, predicted 8 -> 8/10.
    assert results["per_class_iou"] == pytest.approx({"cat": 3 / 7, "dog": 9 / 11, "grass": 0.8})
    assert results["miou"] == pytest.approx((3 / 7 + 9 / 11 + 0.8) / 3)
    assert results["seen_miou"] == pytest.approx((3 / 7 + 9 / 11) / 2)
    assert results["held_out_miou"] == pytest.approx(0.8)
    assert results["pixel_accuracy"] == pytest.approx(20 / 24)
    # Grounding: image 2 holds no class 0, so its two class-0 predictions go to the nearer present class, 1:
    # class 0: 3 / (4 + 4 - 3); class 1: TP 10, GT 10, predicted 12; class 2 unchanged.
    assert results["per_class_grounding_iou"] == pytest.approx({"cat": 3 / 5, "dog": 10 / 12, "grass": 0.8})
    assert results["grounding_miou"] == pytest.approx((3 / 5 + 10 / 12 + 0.8) / 3)
    # Recall: segment 1 IoU 1; segment 2 IoU 1 once the void pixels leave proposal 2 (4 / 6 otherwise);
    # segment 3 is crowd; segment 5: 4 / 6; segment 7: 6 / 8.
    assert results["recall@0.5"] == 1.0
    assert results["recall@0.7"] == pytest.approx(3 / 4)
    assert results["recall@0.9"] == pytest.approx(2 / 4)
    assert results["num_segments"] == 4 and results["num_proposals"] == NUM_PROPOSALS
    assert results["num_examples"] == 2 and results["num_classes"] == 3 and results["num_names"] == 3
    # One text-embedding pass for the whole split.
    assert model.text_embedder.calls == [(["cat", "dog", "grass"], None)]
    # One segment call per batch, with the images unpadded.
    assert len(model.segment_calls) == 1 and model.segment_calls[0]["shapes"] == [(4, 4, 3), (2, 6, 3)]
    assert model.segment_calls[0]["text_embeddings"].shape == (3, 1, 4)
    assert model.segment_calls[0]["use_proposals"] is True
    assert "2/2" in capsys.readouterr().out


def test_image_size_resizes_images_and_logits_go_back_to_label_size():
    # A 4 x 2 image scaled to 8 x 4 for the model; its logits and mask logits are resized back to 4 x 2.
    example = _example(
        semantic=[[1, 2]] * 4, predicted=[[1, 2]] * 4, proposals=[[1, 0]] * 4, panoptic_ids=[[4, 0]] * 4,
        segments=[(4, False)],
    )  # fmt: skip
    model = FakeModel()
    results = evaluate(model, _dataset([example]), ["a", "b", "c"], image_size=8, progress=False)
    assert model.segment_calls[0]["shapes"] == [(8, 4, 3)]
    assert results["per_class_iou"] == {"a": None, "b": 1.0, "c": 1.0}
    assert results["recall@0.9"] == 1.0


def test_voc_background_rule_synonyms_prompts_and_options():
    # Queries: "cat", "dog" (the classes but background) then "sky" (background); "cat" is not queried twice.
    # Pixels: truth [bg, cat, dog, bg], winning queries [sky, cat, dog, cat] -> labels [bg, cat, dog, cat].
    example = _example(
        semantic=[[0, 1, 2, 0]], predicted=[[2, 0, 1, 0]], proposals=[[0, 0, 0, 0]], panoptic_ids=[[0, 0, 0, 0]],
        segments=[(1, False)],
    )  # fmt: skip
    del example["panoptic_image"], example["segments"]
    dataset = tf.data.Dataset.from_tensors(example)
    model = FakeModel()
    results = evaluate(
        model, dataset, ["background", "cat", "dog"], background_label=0, background_class_names=["sky", "Cat"],
        synonyms={"dog": ["dog", "puppy"]}, prompts=["a photo of a {}."], use_proposals=False, progress=False,
    )  # fmt: skip
    assert model.text_embedder.calls == [(["cat", "dog", "puppy", "sky"], ("a photo of a {}.",))]
    assert model.segment_calls[0]["name_valid"].tolist() == [[True, False], [True, True], [True, False]]
    assert model.segment_calls[0]["use_proposals"] is False
    # background: 1/2 (not in the mean), cat: TP 1, GT 1, predicted 2 -> 1/2, dog: 1.
    assert results["miou"] == pytest.approx(0.75)
    assert results["miou_with_background"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert "recall@0.5" not in results


def test_max_examples_and_mask_logits_from_a_second_backbone_pass():
    model = FakeModelWithoutMaskLogits()
    results = evaluate(model, _dataset(EXAMPLES), ["cat", "dog", "grass"], max_examples=1, progress=False)
    assert results["num_examples"] == 1
    assert results["recall@0.9"] == 1.0 and results["num_segments"] == 2  # segments 1 and 2 of image 1


def test_bad_arguments():
    model = FakeModel()
    with pytest.raises(ValueError, match="background_label"):
        evaluate(model, _dataset(EXAMPLES), ["cat"], background_label=3)
    with pytest.raises(ValueError, match="unbatched"):
        evaluate(model, _dataset(EXAMPLES).padded_batch(2), ["cat", "dog", "grass"])
    with pytest.raises(ValueError, match="text_embedder"):
        evaluate(object(), _dataset(EXAMPLES), ["cat", "dog", "grass"])
