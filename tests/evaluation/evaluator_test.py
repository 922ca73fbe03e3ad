"""evaluate() on tiny in-memory tf.data splits with a fake model whose predictions are written in the images.

See fake_openseg_model.py for how the fake model reads its answers; every expected number below is counted by
hand.
"""

import pytest
import tensorflow as tf
from fake_openseg_model import EXAMPLES
from fake_openseg_model import NUM_PROPOSALS
from fake_openseg_model import FakeModel
from fake_openseg_model import FakeModelWithoutMaskLogits
from fake_openseg_model import dataset_of
from fake_openseg_model import example

from keras_openseg.evaluation import evaluate


def test_metrics_by_hand_with_padding_and_panoptic_recall(capsys):
    model = FakeModel()
    results = evaluate(
        model, dataset_of(EXAMPLES), ["cat", "dog", "grass"], batch_size=2,
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
    sample = example(
        semantic=[[1, 2]] * 4, predicted=[[1, 2]] * 4, proposals=[[1, 0]] * 4, panoptic_ids=[[4, 0]] * 4,
        segments=[(4, False)],
    )  # fmt: skip
    model = FakeModel()
    results = evaluate(model, dataset_of([sample]), ["a", "b", "c"], image_size=8, progress=False)
    assert model.segment_calls[0]["shapes"] == [(8, 4, 3)]
    assert results["per_class_iou"] == {"a": None, "b": 1.0, "c": 1.0}
    assert results["recall@0.9"] == 1.0


def test_voc_background_rule_synonyms_prompts_and_options():
    # Queries: "cat", "dog" (the classes but background) then "sky" (background); "cat" is not queried twice.
    # Pixels: truth [bg, cat, dog, bg], winning queries [sky, cat, dog, cat] -> labels [bg, cat, dog, cat].
    sample = example(
        semantic=[[0, 1, 2, 0]], predicted=[[2, 0, 1, 0]], proposals=[[0, 0, 0, 0]], panoptic_ids=[[0, 0, 0, 0]],
        segments=[(1, False)],
    )  # fmt: skip
    del sample["panoptic_image"], sample["segments"]
    dataset = tf.data.Dataset.from_tensors(sample)
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
    results = evaluate(model, dataset_of(EXAMPLES), ["cat", "dog", "grass"], max_examples=1, progress=False)
    assert results["num_examples"] == 1
    assert results["recall@0.9"] == 1.0 and results["num_segments"] == 2  # segments 1 and 2 of image 1


def test_bad_arguments():
    model = FakeModel()
    with pytest.raises(ValueError, match="background_label"):
        evaluate(model, dataset_of(EXAMPLES), ["cat"], background_label=3)
    with pytest.raises(ValueError, match="unbatched"):
        evaluate(model, dataset_of(EXAMPLES).padded_batch(2), ["cat", "dog", "grass"])
    with pytest.raises(ValueError, match="text_embedder"):
        evaluate(object(), dataset_of(EXAMPLES), ["cat", "dog", "grass"])


def test_panoptic_only_split_gives_recall_only():
    dataset = dataset_of(EXAMPLES).map(lambda sample: {k: v for k, v in sample.items() if k != "semantic"})
    results = evaluate(FakeModel(), dataset, ["thing"], batch_size=2, progress=False)
    assert "miou" not in results and results["num_examples"] == 2
    assert results["recall@0.5"] == 1.0 and results["recall@0.9"] == pytest.approx(2 / 4)
