"""benchmarks/shape_diagnosis.py: per-kind proposal recall against numpy, the oracle's confusion, the report."""

import json
import pathlib
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests" / "models"))

import shape_diagnosis  # noqa: E402
from tiny_openseg import character_text_embedder  # noqa: E402
from tiny_openseg import tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import keras
    import tensorflow_datasets as tfds

    import keras_openseg.datasets  # noqa: F401  (registers openseg_shapes)

    data_dir = tmp_path_factory.mktemp("tfds")
    tfds.builder("openseg_shapes/tiny", data_dir=data_dir).download_and_prepare()
    keras.utils.set_random_seed(0)
    preset = tmp_path_factory.mktemp("presets") / "model"
    tiny_model(text_embedder=character_text_embedder()).save_to_preset(str(preset))
    return str(data_dir), str(preset)


def test_reports_recall_per_kind_and_the_oracle_confusion(setup, tmp_path, capsys):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    import keras_openseg

    data_dir, preset = setup
    output = tmp_path / "diagnosis.json"
    args = ["--dataset", "openseg_shapes/tiny", "--data-dir", data_dir, "--image-size", "64", "--examples", "3"]
    results = shape_diagnosis.run(shape_diagnosis.parse_args([preset, *args, "--json", str(output)]))
    assert json.loads(output.read_text())["segment_recall"] == results["segment_recall"]
    printed = capsys.readouterr().out
    assert "objects" in printed and "stuff" in printed and "Ground-truth masks" in printed

    # numpy: best IoU of any proposal (logit > 0) per ground-truth segment, shapes (ids 1..7) apart from stuff.
    model = keras_openseg.OpenSegModel.from_preset(preset)
    best = {"objects": [], "stuff": []}
    dataset = tfds.builder("openseg_shapes/tiny", data_dir=data_dir).as_dataset(split="held_out", shuffle_files=False)
    for example in dataset.take(3).as_numpy_iterator():
        image = tf.image.resize(example["image"].astype("float32"), (64, 64), antialias=True).numpy()
        proposals = model.backbone.predict_on_batch((image[None] * (1 / 127.5) - 1.0).astype("float32"))
        proposals = np.asarray(proposals["mask_logits"][0])
        proposals = tf.image.resize(proposals.transpose(1, 2, 0), (64, 64), method="bilinear").numpy() > 0
        rgb = example["panoptic_image"].astype(np.int64)
        ids = tf.image.resize((rgb @ np.array([1, 256, 65536]))[..., None], (64, 64), method="nearest").numpy()
        for segment_id, category in zip(example["segments"]["id"], example["segments"]["category_id"]):
            truth = ids[..., 0] == segment_id
            if truth.any():
                ious = [(p & truth).sum() / (p | truth).sum() for p in proposals.transpose(2, 0, 1)]
                best["objects" if category <= 7 else "stuff"].append(max(ious))
    for kind, values in best.items():
        row = results["segment_recall"][kind]
        assert row["segments"] == len(values) > 0, kind
        assert row["mean_best_iou"] == pytest.approx(np.mean(values), abs=0.02), kind
    confusion = np.asarray(results["gt_mask_confusion"])
    assert confusion.shape == (12, 13) and confusion.sum() > 0
    names = results["class_names"]
    iou = results["per_class_gt_mask_iou"]
    for index, name in enumerate(names):  # the oracle's IoU is its confusion's
        union = confusion[index].sum() + confusion[:, index].sum() - confusion[index, index]
        if union:
            assert iou[name] == pytest.approx(confusion[index, index] / union)


def test_arguments():
    assert shape_diagnosis.parse_args(["p"]).split == "held_out"
    with pytest.raises(SystemExit):
        shape_diagnosis.parse_args(["p", "--image-size", "100"])
    with pytest.raises(SystemExit):
        shape_diagnosis.parse_args(["p", "--examples", "0"])
