"""`keras-openseg segment`: segment image files with free-text queries and write overlays and label maps.

For each image `photo.jpg` the command writes `photo_overlay.png` (`keras_openseg.visualize`: the label map over
the image, with a legend) and `photo_labels.png` (the label map, one gray level per query index) to `--output`.
`--top-proposals K` also outlines the K most confident mask proposals in white. `segment.json` records the
queries (label value i = query i) and the prompt templates used.

The queries are embedded as `keras-openseg evaluate` embeds class names (`--prompts none|single|default|FILE`,
resolved by `keras_openseg.text.prompts.resolve_prompts`, default none: bare names, as the training words were
embedded) and passed to `OpenSegModel.segment(text_embeddings=...)`.

Keras (and with it TensorFlow, JAX or PyTorch) is imported in `run`, so `keras-openseg segment --help` is fast.
"""

import json
import os
import pathlib

from keras_openseg.text.prompts import DEFAULT_PROMPTS
from keras_openseg.text.prompts import PROMPTS_HELP
from keras_openseg.text.prompts import prompts_argument


def parse_queries(text):
    """`"cat; person, man, woman; grass"` -> `["cat", ["person", "man", "woman"], "grass"]`.

    Example:

    >>> parse_queries("cat; person, man, woman; grass")
    ['cat', ['person', 'man', 'woman'], 'grass']
    """
    queries = []
    for category in text.split(";"):
        names = [name.strip() for name in category.split(",") if name.strip()]
        if names:
            queries.append(names[0] if len(names) == 1 else names)
    if not queries:
        raise ValueError(f"--queries {text!r} names no category; separate categories with ';'.")
    return queries


def add_arguments(parser):
    parser.add_argument("images", nargs="+", help="image files (JPEG/PNG)")
    parser.add_argument("--preset", required=True, help="OpenSegModel preset: local dir, kaggle://, hf://")
    parser.add_argument(
        "--queries", required=True, help='categories separated by ";", synonyms by ",": "cat; person, man; grass"'
    )
    parser.add_argument("--prompts", type=prompts_argument, default=DEFAULT_PROMPTS, help=PROMPTS_HELP)
    parser.add_argument("--output", default="segment_output", help="folder for overlays and label maps")
    parser.add_argument("--top-proposals", type=int, default=0, help="outline the K most confident proposals")
    parser.add_argument("--no-proposals", action="store_true", help="per-pixel embeddings instead of proposals")
    return parser


def run(args):
    """Segments `args.images`; returns the exit status. Bad input raises (`keras_openseg.cli` reports it)."""
    import numpy as np
    from PIL import Image

    from keras_openseg.evaluation.queries import embed_class_queries
    from keras_openseg.models import OpenSegModel
    from keras_openseg.text.prompts import resolve_prompts
    from keras_openseg.visualization import visualize

    queries = parse_queries(args.queries)
    templates, prompt_record = resolve_prompts(args.prompts)
    if args.top_proposals < 0:
        raise ValueError(f"--top-proposals must be >= 0. Received: {args.top_proposals}")
    if args.top_proposals and args.no_proposals:
        raise ValueError("--top-proposals draws mask proposals, which --no-proposals does not use; give one of them.")
    missing = [path for path in args.images if not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(f"no such image file: {', '.join(missing)}")
    # Every image is decoded before the model loads, so an unreadable one stops the command at once.
    images = [np.asarray(Image.open(path).convert("RGB")) for path in args.images]
    model = OpenSegModel.from_preset(args.preset)
    if model.text_embedder is None:
        raise ValueError(f"the preset {args.preset} has no text embedder: it cannot embed --queries.")
    names = [[query] if isinstance(query, str) else query for query in queries]
    text_embeddings, name_valid = embed_class_queries(model.text_embedder, names, templates=templates)
    output = pathlib.Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    with open(output / "segment.json", "w", encoding="utf-8") as f:
        json.dump({"preset": args.preset, "queries": names, **prompt_record}, f, indent=1)
    for path, image in zip(args.images, images):
        result = model.segment(
            [image],
            text_embeddings=text_embeddings,
            name_valid=name_valid,
            use_proposals=not args.no_proposals,
            return_logits=False,
            return_mask_logits=args.top_proposals > 0,
        )
        labels = result["labels"][0]
        proposals = top_proposals(result["mask_logits"][0], args.top_proposals) if args.top_proposals else None
        stem = pathlib.Path(path).stem
        overlay_path, labels_path = output / f"{stem}_overlay.png", output / f"{stem}_labels.png"
        Image.fromarray(visualize(image, {"labels": labels}, queries, proposals=proposals)).save(overlay_path)
        Image.fromarray(labels.astype(np.uint8 if len(queries) < 256 else np.uint16)).save(labels_path)
        print(f"{path}: wrote {overlay_path} and {labels_path}")
    return 0


def top_proposals(mask_logits, k):
    """The `k` proposals of highest peak probability, binarized at probability 0.5: `[min(k, N), H, W]` bool.

    Args:
        mask_logits: array `[N, H, W]`. One image's mask-proposal logits (`segment(..., return_mask_logits=True)`).
        k: int. How many proposals to keep.

    Example:

    >>> import numpy as np
    >>> logits = np.full((3, 2, 2), -5.0); logits[1, 0, 0] = 5.0; logits[2, :, 1] = 1.0
    >>> top_proposals(logits, 2).astype(int).tolist()
    [[[1, 0], [0, 0]], [[0, 1], [0, 1]]]
    """
    import numpy as np

    mask_logits = np.asarray(mask_logits, "float32")
    # The sigmoid is monotone: ranking by the peak logit ranks by the peak probability; logit 0 is probability 0.5.
    order = np.argsort(-mask_logits.reshape(len(mask_logits), -1).max(-1), kind="stable")[:k]
    return mask_logits[order] > 0.0
