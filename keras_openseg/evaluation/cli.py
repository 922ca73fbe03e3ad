"""`keras-openseg evaluate`: mIoU, Grounding mIoU and proposal recall of a preset on a tfds split.

Example:
    keras-openseg evaluate --preset ./my_preset --dataset ade20k/150 --synonyms --json ade150.json
    keras-openseg evaluate --preset ./my_preset --dataset openseg_shapes --max-examples 64
    keras-openseg evaluate --saved-model ./openseg_release --dataset pascal_context/59   # Google's release
"""

import json
import math

from keras_openseg.evaluation.tables import SYNONYM_VOCABULARY
from keras_openseg.evaluation.tables import benchmark_name
from keras_openseg.evaluation.tables import format_miou_table
from keras_openseg.evaluation.tables import format_per_class_table
from keras_openseg.evaluation.tables import format_recall_table
from keras_openseg.text.prompts import DEFAULT_PROMPTS
from keras_openseg.text.prompts import PROMPTS_HELP
from keras_openseg.text.prompts import prompts_argument


def add_arguments(parser):
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--preset", help="OpenSegModel preset: local dir, kaggle:// or hf:// handle")
    model.add_argument(
        "--saved-model",
        help="SavedModel with the signature of Google's OpenSeg release (the release itself, or "
        "`keras-openseg export --format google-savedmodel`)",
    )
    parser.add_argument(
        "--text-encoder",
        default=None,
        help="with --saved-model: TextEmbedder preset for the class names (default: the one saved with the "
        "export, else clip_vit_large_patch14_336, the release's)",
    )
    parser.add_argument("--dataset", required=True, help="tfds NAME/CONFIG, e.g. ade20k/150, pascal_voc/20")
    parser.add_argument("--split", default=None, help="tfds split (default: validation, else test)")
    parser.add_argument("--prompts", type=prompts_argument, default=DEFAULT_PROMPTS, help=PROMPTS_HELP)
    parser.add_argument(
        "--synonyms", action="store_true", help="query each class by several names (package synonym lists)"
    )
    parser.add_argument(
        "--no-proposals",
        action="store_true",
        help="per-pixel ablation: dot pixel embeddings with the text instead of mask proposals",
    )
    parser.add_argument("--no-recall", action="store_true", help="skip proposal recall even when masks exist")
    parser.add_argument(
        "--gt-masks",
        action="store_true",
        help="also score the ground-truth-mask oracle (paper table 4): eq. (6) with the ground-truth segments as "
        "the masks and their mask-pooled pixel embeddings as the regions (needs --preset)",
    )
    parser.add_argument("--max-examples", type=int, default=None, help="evaluate only the first N examples")
    parser.add_argument("--batch-size", type=int, default=4, help="images per segment() call (default: 4)")
    parser.add_argument(
        "--image-size",
        type=int,
        default=0,
        help="scale images to this longer side before the model; 0 = as stored (the preset's converter may "
        "still resize) (default: 0)",
    )
    parser.add_argument("--data-dir", default=None, help="tfds data_dir (default: tfds's)")
    parser.add_argument("--json", default=None, help="write the results (all metrics, per-class IoU) to this file")
    parser.add_argument("--per-class", action="store_true", help="print the per-class IoU table")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _load_model(preset):
    from keras_openseg.models import OpenSegModel

    return OpenSegModel.from_preset(preset)


def _load_saved_model(path, text_encoder=None):
    from keras_openseg.google_release import SavedModelSegmenter

    text_embedder = None
    if text_encoder is not None:
        from keras_openseg.models import TextEmbedder

        text_embedder = TextEmbedder.from_preset(text_encoder)
    return SavedModelSegmenter(path, text_embedder=text_embedder)


def _load_dataset(name, split, data_dir):
    """-> (tf.data split, split name, builder metadata dict)."""
    import tensorflow_datasets as tfds

    import keras_openseg.datasets  # noqa: F401  registers the package's builders

    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        # Builds openseg_shapes on the spot; a manual-download dataset stops here with tfds's instructions
        # (or use `keras-openseg build-dataset NAME --manual-dir DIR` first).
        builder.download_and_prepare()
    if split is None:
        available = list(builder.info.splits.keys())
        split = next((s for s in ("validation", "test") if s in available), available[0] if available else "train")
    metadata = dict(builder.info.metadata or {})
    return builder.as_dataset(split=split), split, metadata


def _json_safe(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def run(args):
    from keras_openseg.evaluation.background_rule import dataset_background_options
    from keras_openseg.evaluation.evaluator import evaluate

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}.")
    dataset, split, metadata = _load_dataset(args.dataset, args.split, args.data_dir)
    if "class_names" in metadata:
        class_names = list(metadata["class_names"])
    elif "categories" in metadata:  # panoptic-only data (coco_panoptic_captions): proposal recall only
        class_names = [category["name"] for category in metadata["categories"]]
    else:
        raise ValueError(
            f"dataset {args.dataset!r} has no 'class_names' (or 'categories') in its metadata; the evaluator "
            "needs the class names of its labels."
        )
    benchmark = benchmark_name(args.dataset)
    synonyms = SYNONYM_VOCABULARY.get(benchmark, True) if args.synonyms else None
    # PAS-20b (pascal_voc/20b): background = the PC-59 classes outside VOC (paper sec. 4.1), named by the
    # builder's metadata; PAS-20 (pascal_voc/20) scores no background, as the field does.
    background = dataset_background_options(metadata)

    if args.gt_masks and not args.preset:
        raise ValueError("--gt-masks pools the model's pixel embeddings: it needs --preset, not --saved-model.")
    model = _load_model(args.preset) if args.preset else _load_saved_model(args.saved_model, args.text_encoder)
    results = evaluate(
        model,
        dataset,
        class_names,
        prompts=args.prompts,
        synonyms=synonyms,
        use_proposals=not args.no_proposals,
        ignore_label=metadata.get("ignore_label", 255),
        batch_size=args.batch_size,
        image_size=args.image_size or None,
        max_examples=args.max_examples,
        held_out_class_names=metadata.get("held_out_class_names"),
        proposal_recall=not args.no_recall,
        gt_masks=args.gt_masks,
        progress=not args.no_progress,
        **background,
    )
    if args.saved_model:
        results["saved_model"] = args.saved_model
    # `prompts` / `prompt_templates` come from evaluate(): what was used, the templates themselves for a file.
    results.update(preset=args.preset, dataset=args.dataset, split=split, synonyms=args.synonyms)

    row = f"{args.preset or args.saved_model} ({split})"
    if "miou" in results:
        print(format_miou_table({row: {benchmark: results}}))
        print(format_miou_table({row: {benchmark: results}}, metric="grounding_miou"))
        if "gt_mask_miou" in results:
            print(format_miou_table({row: {benchmark: results}}, metric="gt_mask_miou"))
        for key in ("seen_miou", "held_out_miou"):
            if key in results:
                print(f"{key}: {100 * results[key]:.1f}")
    if "recall@0.5" in results:
        print(format_recall_table({row: results}))
    if args.per_class and "per_class_iou" in results:
        print(format_per_class_table(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(_json_safe(results), f, indent=1)
        print(f"wrote {args.json}")
    return 0
