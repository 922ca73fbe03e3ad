"""Result tables in the paper's layout: mIoU per benchmark (table 2) and proposal recall (table 1)."""

import math

# Paper table 2 column order.
BENCHMARKS = ("A-847", "PC-459", "A-150", "PC-59", "PAS-20")
# Other benchmarks of the package, in the order their columns follow the paper's five when a table has them:
# PAS-20b (VOC with the paper's background rule) and COCO (COCO panoptic val as 133-class semantic
# segmentation, paper fig. 5).
MORE_BENCHMARKS = ("PAS-20b", "COCO")

_BENCHMARK_OF_DATASET = {
    "ade20k/847": "A-847",
    "pascal_context/459": "PC-459",
    "ade20k/150": "A-150",
    "pascal_context/59": "PC-59",
    "pascal_voc/20": "PAS-20",
    "pascal_voc": "PAS-20",
    "pascal_voc/20b": "PAS-20b",
    "coco_panoptic_captions/2017": "COCO",
    "coco_panoptic_captions": "COCO",
}

# Benchmark -> the vocabulary of its package synonym lists (`class_queries.load_synonyms`).
SYNONYM_VOCABULARY = {
    "A-847": "ade847",
    "PC-459": "pc459",
    "A-150": "ade150",
    "PC-59": "pc59",
    "PAS-20": "voc20",
    "PAS-20b": "voc20",
}


def benchmark_name(dataset_name):
    """tfds name ("ade20k/150", "pascal_voc/20:1.0.0") -> its benchmark ("A-150", "PAS-20"); others unchanged."""
    base = str(dataset_name).split(":")[0]
    return _BENCHMARK_OF_DATASET.get(base, base)


def _cell(value, digits=1):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100.0 * value:.{digits}f}"


def _markdown(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = ["| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join(lines)


def format_miou_table(rows, metric="miou"):
    """Markdown table of mIoU (%) with the columns of paper table 2: A-847 | PC-459 | A-150 | PC-59 | PAS-20.

    PAS-20 is VOC with background not scored (`pascal_voc/20`), PAS-20b VOC with the paper's background rule
    (`pascal_voc/20b`); each is reported under its own name.

    Args:
        rows: dict `{row name: {benchmark or tfds name: results dict of evaluate() or a float}}`. Benchmarks
            outside the paper's five get columns after them: PAS-20b and COCO first, then any other (e.g.
            "openseg_shapes").
        metric: str. The results key to show, e.g. "miou" or "grounding_miou". Defaults to "miou".

    Example:

    >>> print(format_miou_table({"OpenSeg R101": {"ade20k/150": {"miou": 0.176}}}))
    mIoU (%)
    | Method       | A-847 | PC-459 | A-150 | PC-59 | PAS-20 |
    |--------------|-------|--------|-------|-------|--------|
    | OpenSeg R101 | -     | -      | 17.6  | -     | -      |
    """
    cells = {name: {benchmark_name(k): v for k, v in results.items()} for name, results in rows.items()}
    present = {b for r in cells.values() for b in r}
    extra = [b for b in MORE_BENCHMARKS if b in present]
    extra += [b for r in cells.values() for b in r if b not in BENCHMARKS + MORE_BENCHMARKS]
    columns = list(BENCHMARKS) + list(dict.fromkeys(extra))
    body = []
    for name, results in cells.items():
        values = [results.get(c) for c in columns]
        body.append([name] + [_cell(v.get(metric) if isinstance(v, dict) else v) for v in values])
    title = {"miou": "mIoU", "grounding_miou": "Grounding mIoU", "gt_mask_miou": "Ground-truth-mask mIoU"}.get(
        metric, metric
    )
    return f"{title} (%)\n" + _markdown(["Method"] + columns, body)


def format_recall_table(rows, thresholds=(0.5, 0.7, 0.9)):
    """Markdown table of proposal recall (%) at IoU thresholds, as paper table 1.

    Args:
        rows: dict `{row name: results dict of evaluate()}` holding `recall@t` (and `num_proposals`).
        thresholds: tuple of float. Columns. Defaults to (0.5, 0.7, 0.9).
    """
    header = ["Method", "N"] + [f"@{t}" for t in thresholds]
    body = [
        [name, str(r.get("num_proposals", "-"))] + [_cell(r.get(f"recall@{t}")) for t in thresholds]
        for name, r in rows.items()
    ]
    return "Proposal recall (%)\n" + _markdown(header, body)


def format_per_class_table(results, key="per_class_iou"):
    """Markdown table of the per-class IoU (%) of one `evaluate()` result, with the grounding IoU beside it."""
    ious = results.get(key, {})
    grounding = results.get("per_class_grounding_iou", {})
    body = [[name, _cell(iou), _cell(grounding.get(name))] for name, iou in ious.items()]
    return _markdown(["Class", "IoU", "Grounding IoU"], body)
