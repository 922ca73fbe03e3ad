"""`keras-openseg pseudo-label`: the thin command line over keras_openseg.data.write_pseudo_labels.

The writer's own tests are in tests/data/pseudo_labels_test.py; tests/cli/commands_test.py runs the command and
its error paths, recipe_test.py teacher -> pseudo labels -> student.
"""

import argparse

from keras_openseg.data import pseudo_labels
from keras_openseg.training import pseudo_label


def parse(*flags):
    return pseudo_label.add_arguments(argparse.ArgumentParser()).parse_args([str(flag) for flag in flags])


def test_the_writer_keeps_its_old_import():
    from keras_openseg.training.pseudo_label import write_pseudo_labels

    assert write_pseudo_labels is pseudo_labels.write_pseudo_labels


def test_selection_flags_default_to_the_teacher(tmp_path):
    args = parse("--teacher", "t", "--dataset", "d", "--output", tmp_path)
    assert args.score_threshold is None and args.nms_iou is None
    assert (
        parse("--teacher", "t", "--dataset", "d", "--output", tmp_path, "--score-threshold", 0.9).score_threshold == 0.9
    )
