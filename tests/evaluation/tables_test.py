"""Result tables in the layout of paper tables 1 and 2."""

import pytest

from keras_openseg.evaluation import benchmark_name
from keras_openseg.evaluation import format_miou_table
from keras_openseg.evaluation import format_per_class_table
from keras_openseg.evaluation import format_recall_table
from keras_openseg.evaluation.tables import SYNONYM_VOCABULARY

pytestmark = pytest.mark.backend_independent


def test_benchmark_names():
    assert benchmark_name("ade20k/847") == "A-847"
    assert benchmark_name("pascal_voc/20:1.0.0") == "PAS-20"
    assert benchmark_name("openseg_shapes") == "openseg_shapes"


def test_miou_table_columns_in_paper_order():
    table = format_miou_table(
        {"ours": {"ade20k/150": {"miou": 0.1762, "grounding_miou": 0.5}, "pascal_voc/20": 0.7, "openseg_shapes": 0.5}}
    )
    lines = table.splitlines()
    assert lines[0] == "mIoU (%)"
    assert [c.strip() for c in lines[1].strip("|").split("|")] == [
        "Method", "A-847", "PC-459", "A-150", "PC-59", "PAS-20", "openseg_shapes",
    ]  # fmt: skip
    assert [c.strip() for c in lines[3].strip("|").split("|")] == ["ours", "-", "-", "17.6", "-", "70.0", "50.0"]
    assert "50.0" in format_miou_table({"ours": {"ade20k/150": {"grounding_miou": 0.5}}}, metric="grounding_miou")


def test_recall_and_per_class_tables():
    results = {"recall@0.5": 0.75, "recall@0.7": 0.5, "recall@0.9": float("nan"), "num_proposals": 8}
    table = format_recall_table({"ours": results})
    assert [c.strip() for c in table.splitlines()[3].strip("|").split("|")] == ["ours", "8", "75.0", "50.0", "-"]
    results = {"per_class_iou": {"cat": 0.5, "dog": None}, "per_class_grounding_iou": {"cat": 1.0}}
    table = format_per_class_table(results)
    assert "| cat   | 50.0 | 100.0" in table and "| dog   | -" in table


def test_voc_is_reported_as_pas20_and_pas20b_under_those_names():
    assert benchmark_name("pascal_voc/20") == "PAS-20"  # background not scored
    assert benchmark_name("pascal_voc/20b:1.1.0") == "PAS-20b"  # the paper's background rule
    table = format_miou_table({"ours": {"pascal_voc/20b": 0.6, "openseg_shapes": 0.5, "pascal_voc/20": 0.7}})
    header, row = (
        [c.strip() for c in line.strip("|").split("|")] for line in (table.splitlines()[1], table.splitlines()[3])
    )
    assert header == ["Method", "A-847", "PC-459", "A-150", "PC-59", "PAS-20", "PAS-20b", "openseg_shapes"]
    assert row == ["ours", "-", "-", "-", "-", "70.0", "60.0", "50.0"]
    assert SYNONYM_VOCABULARY["PAS-20b"] == SYNONYM_VOCABULARY["PAS-20"] == "voc20"
