"""benchmarks/ablations.py: the tables, the paired verdict, the figure, the word-type analysis, and a --quick run."""

import dataclasses
import json
import pathlib
import sys

import numpy as np
import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import ablations  # noqa: E402


@pytest.fixture(scope="module")
def shapes_data_dir(tmp_path_factory):
    """A tfds data dir with `openseg_shapes/tiny` built (seconds)."""
    import tensorflow_datasets as tfds

    import keras_openseg.datasets  # noqa: F401  (registers openseg_shapes)

    data_dir = tmp_path_factory.mktemp("tfds")
    tfds.builder("openseg_shapes/tiny", data_dir=data_dir).download_and_prepare()
    return str(data_dir)


def _results(values):
    """Synthetic results: {variant: [miou per seed]} for seeds 0, 1, 2."""
    rows = {
        name: {
            str(seed): {"miou": value, "per_class_iou": {"circle": value, "sky": 1 - value}}
            for seed, value in enumerate(per_seed)
        }
        for name, per_seed in values.items()
    }
    return {
        "size": {"dataset": "openseg_shapes/default"},
        "seeds": [0, 1, 2],
        "tables": ["4", "9"],
        "backend": "tensorflow",
        "rows": rows,
        "wall_seconds": 60.0,
    }


def test_verdict_pairs_the_seeds():
    results = _results(
        {
            "openseg": [0.40, 0.50, 0.30],
            "per_pixel": [0.35, 0.46, 0.24],  # lower in every seed by ~0.05: beyond the paired spread
            "kp_0.5": [0.42, 0.45, 0.35],  # mixed signs: within the spread
        }
    )
    difference, spread, word = ablations.verdict(results, ("openseg", "miou"), ("per_pixel", "miou"))
    assert word == "lower"
    assert difference == pytest.approx(np.mean([-0.05, -0.04, -0.06]))
    assert spread == pytest.approx(np.std([-0.05, -0.04, -0.06], ddof=1))
    assert ablations.verdict(results, ("openseg", "miou"), ("kp_0.5", "miou"))[2] == "same"
    # One seed is no evidence either way.
    results["seeds"] = [0]
    assert ablations.verdict(results, ("openseg", "miou"), ("per_pixel", "miou")) == (None, None, None)


def test_direction_and_reference_rows():
    assert ablations.direction_holds("lower", "lower") == "holds"
    assert ablations.direction_holds("same", "lower") == "not shown"
    assert ablations.direction_holds("higher", "lower") == "opposite"
    assert ablations.direction_holds("same", "lower or same") == "holds"
    assert ablations.direction_holds("higher", "lower or same") == "opposite"
    assert ablations.direction_holds(None, "lower") is None and ablations.direction_holds("lower", None) is None
    tables = {table[0]: table[3] for table in ablations.TABLES}
    table8 = tables["8"]
    # A recall row is compared with the first recall row; a metric with no earlier row with the first row.
    assert ablations.reference_row(table8, 3) == table8[2]
    assert ablations.reference_row(table8, 1) == table8[0]
    table4 = tables["4"]
    assert ablations.reference_row(table4, 2) == table4[0]  # the oracle against OpenSeg's own mIoU
    shape = tables["shape"]
    # A row is compared with the last earlier row of its metric that makes no claim: the supervised bound with
    # the shape embedding with the supervised bound, not with OpenSeg.
    assert ablations.reference_row(shape, 1) == shape[0]
    assert ablations.reference_row(shape, 3) == shape[2]
    assert ablations.reference_row(shape, 5) == shape[4]


def test_report_prints_a_stored_run(tmp_path, capsys):
    results = _results({"openseg": [0.40, 0.50, 0.30], "per_pixel": [0.35, 0.46, 0.24], "supervised": [0.7, 0.8, 0.75]})
    path = tmp_path / "ablations.json"
    path.write_text(json.dumps(results))
    figure = tmp_path / "figure" / "ablations.png"
    assert ablations.main(["--report", str(path), "--figure", str(figure)]) == 0
    printed = capsys.readouterr().out
    per_pixel = next(line for line in printed.splitlines() if line.strip().startswith("per-pixel"))
    assert "lower" in per_pixel and per_pixel.rstrip().endswith("holds")
    supervised = next(line for line in printed.splitlines() if line.strip().startswith("supervised upper"))
    assert "higher" in supervised and supervised.rstrip().endswith("holds")
    assert figure.stat().st_size > 0
    with pytest.raises(SystemExit):
        ablations.parse_args(["--report", str(tmp_path / "missing.json")])


def test_report_names_rows_trained_otherwise():
    results = _results({"openseg": [0.40, 0.50, 0.30], "per_pixel": [0.35, 0.46, 0.24]})
    assert ablations.changed_variants(results) == [ablations.OLD_RUN_WARNING]  # stored before rows were recorded
    assert ablations.OLD_RUN_WARNING in ablations.format_tables(results)
    results["variants"] = {name: dataclasses.asdict(ablations.VARIANTS[name]) for name in ("openseg", "per_pixel")}
    assert ablations.changed_variants(results) == []
    assert "trained" not in ablations.format_tables(results).split("Table 4")[0]
    results["variants"]["openseg"]["student_matching"] = "one_to_one"
    (line,) = ablations.changed_variants(results)
    assert line.startswith("Row 'openseg' of this run was trained as") and "'one_to_one'" in line


def test_mean_std_skips_missing_values():
    assert ablations.mean_std([0.2, None, 0.4]) == pytest.approx((0.3, np.std([0.2, 0.4], ddof=1), 2))
    assert ablations.mean_std([None]) == (None, None, 0)
    assert ablations.mean_std([0.5])[1] is None


def test_tables_and_figure(tmp_path):
    results = _results({"openseg": [0.40, 0.50, 0.30], "per_pixel": [0.35, 0.46, 0.24], "supervised": [0.7, 0.8, 0.75]})
    text = ablations.format_tables(results)
    assert "Table 4" in text and "Table 9" in text and "Table 5" not in text
    assert "the paper: region embeddings > per-pixel" in text
    assert "0.400" in text and "lower" in text  # OpenSeg's mean, the per-pixel row's verdict
    assert "supervised" in text.split("Per-class IoU")[1]
    path = ablations.plot(results, str(tmp_path / "ablations.png"))
    from PIL import Image

    with Image.open(path) as image:
        assert image.size[0] > 500 and image.size[1] > 300


def test_every_table_row_names_a_variant_and_rows_share_teachers():
    for key, _, _, rows in ablations.TABLES:
        assert rows[0][3] is None, key  # the reference row makes no claim
        for _, variant, metric, expected in rows:
            assert variant in ablations.VARIANTS, (key, variant)
            assert metric in ("miou", "gt_mask_miou", "recall@0.5")
            assert expected in (None, "lower", "higher", "lower or same"), (key, variant)
    variants = ablations.selected_variants([table[0] for table in ablations.TABLES])
    assert variants[0] == "openseg"
    teachers = {ablations.VARIANTS[name].teacher_key for name in variants}
    # The shared one (also student_one_to_one's) + matching, self-attention, position codes, precision,
    # the mask shape embedding, hue rotation.
    assert len(teachers) == 7
    assert ablations.selected_variants(["9"]) == ["openseg", "kp_0.25", "kp_0.5", "kp_0.75"]


def test_arguments():
    args = ablations.parse_args(["--quick"])
    every = [table[0] for table in ablations.TABLES]
    assert args.seeds == [0] and args.tables == every  # the smoke test runs every row
    assert ablations.parse_args([]).tables == [key for key in every if key not in ("colour", "precision", "shape")]
    assert ablations.parse_args(["--tables", "every"]).tables == every
    assert ablations.parse_args(["--tables", "shape"]).tables == ["shape"]
    assert ablations.parse_args(["--seeds", "3,4", "--tables", "4,9"]).seeds == [3, 4]
    with pytest.raises(SystemExit):
        ablations.parse_args(["--tables", "7"])
    with pytest.raises(SystemExit):
        ablations.parse_args(["--seeds", "a"])
    with pytest.raises(SystemExit):
        ablations.parse_args(["--quick", "--size", "demo"])


def test_demo_size_is_the_full_demo_without_overlays():
    from keras_openseg.demo import SETTINGS

    assert ablations.parse_args(["--tables", "4", "--size", "demo"]).size == "demo"
    demo = ablations.SIZES["demo"]
    assert demo.overlay_images == 0
    assert dataclasses.replace(demo, overlay_images=SETTINGS["full"].overlay_images) == SETTINGS["full"]


def test_teacher_and_student_match_masks_as_the_demos():
    """A row's teacher and student use the demo's dice matchings (one-to-one, then the student's default max)."""
    import types

    from keras_openseg.demo import _Demo
    from keras_openseg.demo import build_demo_backbone
    from keras_openseg.models import OpenSegModel
    from keras_openseg.models import OpenSegTeacher

    _, _, demo_teacher_matching = build_demo_backbone(ablations.SIZES["default"], 8)
    teacher = OpenSegTeacher.from_architecture("test_tiny")
    demo_student = _Demo._start_from_teacher(types.SimpleNamespace(teacher=teacher), OpenSegModel)
    row = ablations.VARIANTS["openseg"]
    assert row.matching == demo_teacher_matching == "one_to_one"
    assert ablations.student_task(row, 1.0) == {"matching": demo_student.matching, "alpha": 1.0}
    assert demo_student.matching == "max"
    # The two matching rows change one stage each.
    assert ablations.VARIANTS["max_matching"].matching == "max"
    assert ablations.student_task(ablations.VARIANTS["max_matching"], 1.0)["matching"] == "max"
    assert ablations.student_task(ablations.VARIANTS["student_one_to_one"], 0.5) == {
        "matching": "one_to_one",
        "alpha": 0.5,
    }
    assert ablations.VARIANTS["student_one_to_one"].teacher_key == row.teacher_key  # shares the seed's teacher


def test_word_types_are_disjoint():
    types = ablations.word_types()
    names = list(types)
    for index, first in enumerate(names):
        for second in names[index + 1 :]:
            assert not types[first] & types[second], (first, second)
    assert {"circle", "circles", "disc"} <= types["shape name"]
    assert "red" in types["colour"] and "sky" in types["stuff"]


# The whole pipeline of every row (teachers, pseudo labels, students, supervised bound, bfloat16, evaluation,
# JSON and figure) on tiny data; what it drives (training, models, losses, evaluation) is tested per backend.
@pytest.mark.slow
@pytest.mark.end_to_end("torch", covered_by="the rows' models, losses, training and evaluation are tested per backend")
def test_quick_run_writes_every_row(tmp_path, shapes_data_dir):
    output = tmp_path / "ablations"
    results = ablations.run(
        ablations.parse_args(["--quick", "--output", str(output), "--data-dir", str(shapes_data_dir)])
    )
    stored = json.loads((output / "ablations.json").read_text())
    assert set(stored["rows"]) == set(ablations.VARIANTS)
    assert ablations.changed_variants(stored) == []  # each row's variant is stored with it
    for name, runs in stored["rows"].items():
        assert set(runs) == {"0"}, name
        assert runs["0"]["miou"] is not None and 0.0 <= runs["0"]["miou"] <= 1.0, name
    assert stored["rows"]["openseg"]["0"]["gt_mask_miou"] is not None
    assert stored["rows"]["shape_embedding"]["0"]["gt_mask_miou"] is not None
    assert set(stored["rows"]["supervised"]["0"]["validation"]) == set(stored["rows"]["openseg"]["0"]["per_class_iou"])
    assert stored["word_signal"]["types"]["shape name"]["distinct"] > 0
    assert (output / "ablations.png").stat().st_size > 0
    assert results["wall_seconds"] > 0
