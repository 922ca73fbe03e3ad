"""train(): teacher -> pseudo labels -> student through the CLI (resuming and seeds: determinism_test.py)."""

import argparse
import os

import keras
import pytest
from training_fakes import WhitespaceExtractor
from training_fakes import random_word_table
from training_fakes import tiny_config

from keras_openseg.data import load_pseudo_labels
from keras_openseg.training import cli
from keras_openseg.training import pseudo_label
from keras_openseg.training import train


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
