"""train(): teacher -> pseudo labels -> student through the CLI (resuming and seeds: determinism_test.py), and the
supervised upper bound (supervision="labels")."""

import argparse
import os

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds
from training_fakes import WhitespaceExtractor
from training_fakes import random_word_table
from training_fakes import tiny_config

from keras_openseg.data import load_pseudo_labels
from keras_openseg.models import OpenSegModel
from keras_openseg.models import SupervisedRegionModel
from keras_openseg.training import Distribution
from keras_openseg.training import build_model
from keras_openseg.training import cli
from keras_openseg.training import pseudo_label
from keras_openseg.training import train
from keras_openseg.training.recipe import check_given_model


def parse(module, *flags):
    return module.add_arguments(argparse.ArgumentParser()).parse_args([str(flag) for flag in flags])


@pytest.mark.slow
@pytest.mark.end_to_end(
    "torch",
    covered_by="tests/models/openseg_teacher_test.py trains a teacher and pseudo-labels on every backend, "
    "tests/training/determinism_test.py trains the student through train()",
)
def test_teacher_pseudo_labels_student(shapes_data_dir, tmp_path):
    common = ["--data-dir", shapes_data_dir, "--image-size", 32, "--batch-size", 2, "--max-masks", 3]
    # 1. The teacher learns masks only.
    teacher_args = parse(
        cli,
        "--teacher",
        "--dataset",
        "openseg_shapes/tiny",
        "--steps",
        2,
        "--output",
        tmp_path / "teacher",
        "--embedding-dim",
        8,
        *common,
    )
    assert cli.run(teacher_args) == 0
    # 2. Its masks for caption images, in shards of 4.
    label_args = parse(
        pseudo_label,
        "--teacher",
        tmp_path / "teacher" / "preset",
        "--dataset",
        "openseg_shapes/tiny",
        "--output",
        tmp_path / "pseudo",
        "--limit",
        8,
        "--shard-size",
        4,
        "--score-threshold",
        0.0,
        *common,
    )
    assert pseudo_label.run(label_args) == 0
    assert sorted(name for name in os.listdir(tmp_path / "pseudo") if name.startswith("chunk")) == [
        "chunk-00000",
        "chunk-00001",
    ]
    example = next(load_pseudo_labels(str(tmp_path / "pseudo")).as_numpy_iterator())
    assert example["masks"].shape[0] == 3 and "captions" in example
    # 3. The student mixes human and pseudo labels with equal probability.
    # It starts from the teacher's preset and tries the recipe's options: bfloat16 compute, a frozen image
    # encoder, the sync loss.
    config = tiny_config(
        shapes_data_dir,
        tmp_path / "student",
        architecture=str(tmp_path / "teacher" / "preset"),
        pseudo_labels=(str(tmp_path / "pseudo"),),
        steps=2,
        mixed_precision="bfloat16",
        freeze_image_encoder=True,
        sync_loss=True,
    )
    student = train(config, extractor=WhitespaceExtractor(), table=random_word_table(), verbose=0)
    assert student.backbone.embedding_dim == 8
    assert student.backbone.image_encoder.trainable is False
    assert student.backbone.dtype_policy.name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "float32"  # restored after the run
    assert os.path.exists(tmp_path / "student" / "preset" / "task.weights.h5")


@pytest.mark.slow
def test_supervised_upper_bound_trains_on_the_masks_classes(shapes_data_dir, tmp_path):
    names = tfds.builder("openseg_shapes/tiny", data_dir=shapes_data_dir).info.metadata["class_names"]
    class_embeddings = np.random.default_rng(0).normal(size=(len(names), 8)).astype("float32")
    config = tiny_config(shapes_data_dir, tmp_path / "labels", steps=2, supervision="labels")
    model = SupervisedRegionModel.from_architecture("test_tiny", class_embeddings=class_embeddings)
    log = {}

    class Logs(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            log.update(logs or {})

    model = train(
        config, model=model, extractor=WhitespaceExtractor(), table=random_word_table(), callbacks=[Logs()], verbose=0
    )
    assert set(log) >= {"loss", "classification_loss", "dice_loss"} and "grounding_loss" not in log
    assert all(np.isfinite(value) for value in log.values()) and log["classification_loss"] > 0
    restored = OpenSegModel.from_preset(str(tmp_path / "labels" / "preset"))
    assert type(restored) is SupervisedRegionModel
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(restored.class_embeddings), class_embeddings)

    # The model must fit the supervision, and `train` does not build a SupervisedRegionModel itself.
    with pytest.raises(ValueError, match="pass model=SupervisedRegionModel"):
        build_model(config, embedding_dim=8)
    with pytest.raises(ValueError, match="must be a `SupervisedRegionModel`"):
        check_given_model(OpenSegModel.from_architecture("test_tiny"), config, Distribution("none"), 8)
    with pytest.raises(ValueError, match="supervision='labels'"):
        check_given_model(model, config.replace(supervision="captions"), Distribution("none"), 8)
    # The config's alpha is the run's: a given model weighting L_S otherwise is refused, not silently kept.
    with pytest.raises(ValueError, match=r"alpha=1.0, the config with alpha=0.0"):
        check_given_model(model, config.replace(alpha=0.0), Distribution("none"), 8)
