"""Every `keras-openseg` command end to end through `cli.main` on tiny presets: what it writes, and its errors.

Bad input must come out as exactly one stderr line `keras-openseg: error: ...` with exit status 2, and with
`--debug` as the exception itself. (`demo --quick` is tests/demo/demo_test.py's.)
"""

import json
import os

import keras
import numpy as np
import pytest
from PIL import Image

from keras_openseg import cli
from keras_openseg.models import OpenSegModel
from keras_openseg.models import OpenSegTeacher
from keras_openseg.segment_cli import top_proposals
from keras_openseg.visualization import visualize

BACKEND = keras.backend.backend()
QUERIES = "cat; dog, puppy; grass"
QUERY_LIST = ["cat", ["dog", "puppy"], "grass"]


def run_cli(capsys, *argv):
    code = cli.main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(result, *fragments):
    code, _, err = result
    lines = err.splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("keras-openseg: error: "), err
    for fragment in fragments:
        assert fragment in lines[0]


# segment


def test_segment_writes_the_labels_of_segment_and_outlines_top_proposals(model_preset, image_files, tmp_path, capsys):
    output = tmp_path / "out"
    code, out, _ = run_cli(
        capsys, "segment", *image_files, "--preset", model_preset, "--queries", QUERIES, "--output", output,
        "--top-proposals", 2,
    )  # fmt: skip
    assert code == 0
    model = OpenSegModel.from_preset(model_preset)
    for path in image_files:
        image = np.asarray(Image.open(path).convert("RGB"))
        stem = os.path.splitext(os.path.basename(path))[0]
        assert f"{output / stem}_overlay.png" in out
        expected = model.segment([image], queries=QUERY_LIST, return_mask_logits=True)
        labels = np.asarray(Image.open(output / f"{stem}_labels.png"))
        np.testing.assert_array_equal(labels, expected["labels"][0])
        overlay = np.asarray(Image.open(output / f"{stem}_overlay.png"))
        proposals = top_proposals(expected["mask_logits"][0], 2)
        assert proposals.shape == (2,) + image.shape[:2]
        np.testing.assert_array_equal(overlay, visualize(image, {"labels": labels}, QUERY_LIST, proposals=proposals))
        assert overlay.shape[0] == image.shape[0] and overlay.shape[1] > image.shape[1]  # the legend


def test_segment_without_proposals_uses_the_pixel_embeddings(model_preset, image_files, tmp_path, capsys):
    output = tmp_path / "out"
    argv = ["segment", image_files[0], "--preset", model_preset, "--queries", QUERIES, "--output", output]
    assert run_cli(capsys, *argv, "--no-proposals")[0] == 0
    image = np.asarray(Image.open(image_files[0]))
    expected = OpenSegModel.from_preset(model_preset).segment([image], queries=QUERY_LIST, use_proposals=False)
    np.testing.assert_array_equal(np.asarray(Image.open(output / "image0_labels.png")), expected["labels"][0])


def test_top_proposals_ranks_by_peak_probability():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 6, 7)).astype("float32")
    probabilities = 1 / (1 + np.exp(-logits))
    order = np.argsort(-probabilities.reshape(5, -1).max(-1))[:3]
    np.testing.assert_array_equal(top_proposals(logits, 3), probabilities[order] > 0.5)
    assert top_proposals(logits, 9).shape == (5, 6, 7)


def test_segment_bad_input_is_one_line(model_preset, image_files, tmp_path, capsys):
    unreadable = tmp_path / "notes.png"
    unreadable.write_text("not an image")
    good = ["--preset", model_preset, "--queries", QUERIES, "--output", tmp_path / "out"]
    assert_usage_error(run_cli(capsys, "segment", unreadable, *good), "cannot identify image file", "notes.png")
    assert_usage_error(run_cli(capsys, "segment", tmp_path / "missing.png", *good), "no such image file")
    missing_preset = ["--preset", tmp_path / "no_preset", "--queries", QUERIES, "--output", tmp_path / "out"]
    assert_usage_error(run_cli(capsys, "segment", image_files[0], *missing_preset), "no_preset")
    empty = ["--preset", model_preset, "--queries", " ; ", "--output", tmp_path / "out"]
    assert_usage_error(run_cli(capsys, "segment", image_files[0], *empty), "--queries")
    both = [*good, "--top-proposals", 2, "--no-proposals"]
    assert_usage_error(run_cli(capsys, "segment", image_files[0], *both), "--top-proposals")
    assert not (tmp_path / "out").exists()  # nothing written before the input is known to be good


def test_debug_lets_the_exception_through(image_files, tmp_path):
    argv = ["segment", image_files[0], "--preset", str(tmp_path / "no_preset"), "--queries", QUERIES]
    with pytest.raises(ValueError, match="no_preset"):
        cli.main(["--debug", *argv])
    with pytest.raises(ValueError, match="no_preset"):
        cli.main([*argv, "--debug"])  # also after the command
    with pytest.raises(ValueError, match="--queries"):
        cli.main(["--debug", "segment", image_files[0], "--preset", "p", "--queries", ";"])


# evaluate


def test_evaluate_writes_its_json(model_preset, shapes_data_dir, tmp_path, capsys):
    results = tmp_path / "results.json"
    code, out, _ = run_cli(
        capsys, "evaluate", "--preset", model_preset, "--dataset", "openseg_shapes/tiny", "--data-dir", shapes_data_dir,
        "--max-examples", 2, "--batch-size", 2, "--json", results, "--no-progress",
    )  # fmt: skip
    assert code == 0
    written = json.loads(results.read_text())
    assert written["dataset"] == "openseg_shapes/tiny" and written["preset"] == model_preset
    assert 0.0 <= written["miou"] <= 1.0 and 0.0 <= written["recall@0.5"] <= 1.0
    assert "mIoU" in out


def test_evaluate_bad_input_is_one_line(model_preset, shapes_data_dir, tmp_path, capsys):
    data = ["--data-dir", shapes_data_dir, "--no-progress"]
    assert_usage_error(
        run_cli(capsys, "evaluate", "--preset", model_preset, "--dataset", "no_such_dataset", *data),
        "no_such_dataset",
    )
    assert_usage_error(
        run_cli(capsys, "evaluate", "--preset", tmp_path / "no_preset", "--dataset", "openseg_shapes/tiny", *data),
        "no_preset",
    )
    assert_usage_error(
        run_cli(capsys, "evaluate", "--preset", model_preset, "--dataset", "openseg_shapes/tiny", "--batch-size", 0),
        "--batch-size",
    )


# train


@pytest.mark.end_to_end(
    "torch", covered_by="tests/training trains through the same train() on every backend; this adds the CLI's wiring"
)
def test_train_a_teacher_and_load_its_preset(shapes_data_dir, tmp_path, capsys):
    output = tmp_path / "teacher"
    code, out, _ = run_cli(
        capsys, "train", "--teacher", "--architecture", "tiny", "--embedding-dim", 8, "--dataset",
        "openseg_shapes/tiny", "--data-dir", shapes_data_dir, "--steps", 2, "--batch-size", 2, "--image-size", 32,
        "--max-masks", 3, "--output", output,
    )  # fmt: skip
    assert code == 0 and "preset" in out
    teacher = OpenSegTeacher.from_preset(str(output / "preset"))
    assert teacher.backbone.embedding_dim == 8


def test_train_bad_input_is_one_line(shapes_data_dir, tmp_path, capsys):
    assert_usage_error(
        run_cli(capsys, "train", "--config", tmp_path / "missing.json", "--output", tmp_path / "run"), "missing.json"
    )
    assert_usage_error(
        run_cli(
            capsys,
            "train",
            "--teacher",
            "--architecture",
            "tiny",
            "--dataset",
            "no_such_dataset",
            "--data-dir",
            shapes_data_dir,
            "--steps",
            1,
            "--output",
            tmp_path / "run",
        ),  # fmt: skip
        "no_such_dataset",
    )


# pseudo-label


def test_pseudo_label_writes_shards(teacher_preset, shapes_data_dir, tmp_path, capsys):
    output = tmp_path / "pseudo"
    code, out, _ = run_cli(
        capsys, "pseudo-label", "--teacher", teacher_preset, "--dataset", "openseg_shapes/tiny", "--data-dir",
        shapes_data_dir, "--output", output, "--limit", 4, "--shard-size", 2, "--image-size", 32, "--batch-size", 2,
        "--max-masks", 3,
    )  # fmt: skip
    assert code == 0 and "4 pseudo-labeled images in 2 shards" in out
    assert os.listdir(output)


def test_pseudo_label_bad_input_is_one_line(teacher_preset, shapes_data_dir, tmp_path, capsys):
    common = ["--data-dir", shapes_data_dir, "--output", tmp_path / "pseudo"]
    assert_usage_error(
        run_cli(
            capsys, "pseudo-label", "--teacher", tmp_path / "no_preset", "--dataset", "openseg_shapes/tiny", *common
        ),
        "no_preset",
    )
    assert_usage_error(
        run_cli(capsys, "pseudo-label", "--teacher", teacher_preset, "--dataset", "no_such_dataset", *common),
        "no_such_dataset",
    )


# export


# The format each backend exports without extra packages (a TF SavedModel needs torch_xla on torch), and the
# fixed input size a torch program needs.
EXPORT_FORMAT = ["--format", "torch", "--image-size", 64] if BACKEND == "torch" else ["--format", "saved_model"]


# On tensorflow and jax the CLI's SavedModel export is test_cli_saved_model_matches_keras (tests/export), which
# also reloads and checks the artifact; here the torch backend's own format through the CLI.
@pytest.mark.slow
@pytest.mark.end_to_end("torch", covered_by="tests/export/export_test.py runs the CLI's SavedModel export")
def test_export_writes_an_artifact(model_preset, tmp_path, capsys):
    output = tmp_path / "export"
    code, out, err = run_cli(capsys, "export", "--preset", model_preset, *EXPORT_FORMAT, "--output", output)
    assert code == 0 and "wrote" in out, err
    info = json.loads((output / "export_info.json").read_text())
    assert info["embedding_dim"] == 8


def test_export_bad_input_is_one_line(tmp_path, capsys):
    assert_usage_error(
        run_cli(capsys, "export", "--preset", tmp_path / "no_preset", *EXPORT_FORMAT, "--output", tmp_path / "export"),
        "no_preset",
    )


# build-dataset


def test_build_dataset_prepares_openseg_shapes(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "build-dataset", "openseg_shapes/tiny", "--data-dir", tmp_path)
    assert code == 0 and "openseg_shapes/tiny" in out and "ready in" in out


def test_build_dataset_bad_input_is_one_line(tmp_path, capsys):
    assert_usage_error(
        run_cli(
            capsys, "build-dataset", "pascal_voc", "--manual-dir", tmp_path / "no_download", "--data-dir", tmp_path
        ),
        "no_download",
    )
    assert_usage_error(run_cli(capsys, "build-dataset", "no_such_dataset", "--data-dir", tmp_path), "no_such_dataset")
