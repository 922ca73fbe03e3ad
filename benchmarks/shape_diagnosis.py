"""Why a model's shapes fail on `openseg_shapes`: its masks, or what its region embeddings know (issue 16 item 1).

    python benchmarks/shape_diagnosis.py demo_output/preset                    # held_out, 150 images, 96 px
    python benchmarks/shape_diagnosis.py demo_output/preset --split validation --json diagnosis.json

For a trained model (a preset folder, e.g. the demo's `OUTPUT/preset`) on one split, it prints:

- the proposals per kind of segment: for every ground-truth segment the best IoU of a proposal (mask logit
  > 0 at the evaluation size), as recall at IoU 0.5 / 0.7 and mean best IoU, for the objects (shapes) and the
  stuff regions apart: do the masks find the shapes?
- per class, the IoU with the model's proposals and with the ground-truth masks read out as the model reads
  its own (`evaluate(gt_masks=True)`, the table-4 oracle): what is left when the masks are perfect;
- the oracle's confusion matrix (rows: true class, fraction of its pixels per predicted class): what the
  region embeddings of a perfectly delimited shape are taken for.
"""

import argparse
import json
import sys

import numpy as np

from keras_openseg.demo import _number  # imports no backend


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", help="a trained OpenSegModel preset folder (with its text embedder)")
    parser.add_argument("--split", default="held_out", help="openseg_shapes split (default: held_out)")
    parser.add_argument("--dataset", default="openseg_shapes/default", help="tfds name (default: %(default)s)")
    parser.add_argument("--data-dir", default=None, help="tfds data directory (default: tfds's own)")
    parser.add_argument("--image-size", type=int, default=96, help="evaluation size in pixels (the demo's: 96)")
    parser.add_argument("--examples", type=int, default=150, help="images of the split (default: 150)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.image_size < 32 or args.image_size % 32:
        parser.error(f"--image-size must be a multiple of 32. Received: {args.image_size}")
    if args.examples < 1:
        parser.error(f"--examples must be positive. Received: {args.examples}")
    return args


def segment_recall(model, dataset, image_size, num_shapes):
    """Best proposal IoU per ground-truth segment, split into objects (category id <= num_shapes) and stuff."""
    import tensorflow as tf

    from keras_openseg.data.masks import panoptic_ids

    best = {"objects": [], "stuff": []}
    for example in dataset.as_numpy_iterator():
        image = tf.image.resize(example["image"].astype("float32"), (image_size, image_size), antialias=True)
        outputs = model.segment(
            image.numpy()[None],
            text_embeddings=np.ones((1, model.backbone.embedding_dim), "float32"),  # masks only
            return_mask_logits=True,
            return_logits=False,
        )
        proposals = outputs["mask_logits"][0] > 0.0  # [N, S, S]
        ids = panoptic_ids(example["panoptic_image"])[..., None]
        ids = tf.image.resize(ids, (image_size, image_size), method="nearest").numpy()[..., 0]
        for segment_id, category in zip(example["segments"]["id"], example["segments"]["category_id"]):
            truth = ids == segment_id
            if not truth.any():
                continue
            intersection = (proposals & truth).sum(axis=(1, 2))
            union = np.maximum((proposals | truth).sum(axis=(1, 2)), 1)
            best["objects" if category <= num_shapes else "stuff"].append(float((intersection / union).max()))
    return {
        kind: {
            "segments": len(values),
            "recall@0.5": float(np.mean(np.asarray(values) >= 0.5)) if values else None,
            "recall@0.7": float(np.mean(np.asarray(values) >= 0.7)) if values else None,
            "mean_best_iou": float(np.mean(values)) if values else None,
        }
        for kind, values in best.items()
    }


def run(args):
    import tensorflow_datasets as tfds

    import keras_openseg
    import keras_openseg.datasets  # noqa: F401  (registers openseg_shapes)
    from keras_openseg.datasets.openseg_shapes import world
    from keras_openseg.evaluation import evaluate

    model = keras_openseg.OpenSegModel.from_preset(args.preset)
    builder = tfds.builder(args.dataset, data_dir=args.data_dir)
    metadata = builder.info.metadata
    class_names = list(metadata["class_names"])
    dataset = builder.as_dataset(split=args.split, shuffle_files=False).take(args.examples)
    recall = segment_recall(model, dataset, args.image_size, len(world.SHAPES))
    result = evaluate(
        model,
        dataset,
        class_names,
        image_size=args.image_size,
        batch_size=16,
        held_out_class_names=metadata["held_out_class_names"],
        proposal_recall=False,
        gt_masks=True,
        confusion=True,
        progress=False,
    )
    confusion = result["gt_mask_confusion_matrix"]
    results = {
        "preset": args.preset,
        "split": args.split,
        "examples": result["num_examples"],
        "image_size": args.image_size,
        "segment_recall": recall,
        "miou": result["miou"],
        "gt_mask_miou": result["gt_mask_miou"],
        "per_class_iou": result["per_class_iou"],
        "per_class_gt_mask_iou": result["per_class_gt_mask_iou"],
        "gt_mask_confusion": confusion.tolist(),
        "class_names": class_names,
    }
    print(format_results(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(results, file, indent=2)
    return results


def format_results(results):
    names = results["class_names"]
    lines = [
        f"{results['preset']}: {results['split']}, {results['examples']} images at {results['image_size']} px",
        "",
        "Proposals per ground-truth segment (best IoU of any mask)",
        f"  {'kind':<10}{'segments':>9}{'recall@0.5':>12}{'recall@0.7':>12}{'mean best IoU':>15}",
    ]
    for kind, row in results["segment_recall"].items():
        lines.append(
            f"  {kind:<10}{row['segments']:>9}{_number(row['recall@0.5']):>12}{_number(row['recall@0.7']):>12}"
            f"{_number(row['mean_best_iou']):>15}"
        )
    lines += ["", f"IoU per class: mIoU {_number(results['miou'])}, oracle {_number(results['gt_mask_miou'])}"]
    lines.append("  " + " " * 18 + "".join(f"{name[:8]:>9}" for name in names))
    for label, key in (("proposals", "per_class_iou"), ("ground-truth masks", "per_class_gt_mask_iou")):
        lines.append(f"  {label:<18}" + "".join(f"{_number(results[key].get(name)):>9}" for name in names))
    lines += ["", "Ground-truth masks: fraction of each true class's pixels per predicted class (last: none)"]
    lines.append("  " + " " * 10 + "".join(f"{name[:6]:>7}" for name in names) + f"{'none':>7}")
    for name, row in zip(names, np.asarray(results["gt_mask_confusion"], np.float64)):
        fractions = row / max(row.sum(), 1.0)
        lines.append(f"  {name[:9]:<10}" + "".join(f"{value:7.2f}" for value in fractions))
    return "\n".join(lines)


def main(argv=None):
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
