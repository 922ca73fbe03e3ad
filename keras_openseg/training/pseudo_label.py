"""`keras-openseg pseudo-label`: a teacher's masks for caption-only images (paper sec. 3.3).

    keras-openseg pseudo-label --teacher runs/teacher/preset --dataset localized_narratives/coco --output runs/pl
    keras-openseg train --dataset coco_panoptic_captions/2017 --pseudo-labels runs/pl --output runs/student

The command line of `keras_openseg.data.write_pseudo_labels` (resumable shards and their index; a killed run
started again skips the finished shards); `keras_openseg.data.load_pseudo_labels(DIR)` reads the folder.
"""


def add_arguments(parser):
    """Adds the `pseudo-label` flags to an argparse parser."""
    parser.add_argument("--teacher", required=True, help="OpenSegTeacher preset (dir or handle)")
    parser.add_argument(
        "--dataset", required=True, help="tfds name of the caption-only images, e.g. localized_narratives/coco"
    )
    parser.add_argument("--output", required=True, help="folder for the shards and the index")
    parser.add_argument("--split", default="train", help="split to label (default train)")
    parser.add_argument("--data-dir", default=None, help="tfds data directory")
    parser.add_argument("--image-size", type=int, default=640, help="long side of the stored images (default 640)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per teacher call (default 8)")
    parser.add_argument("--max-masks", type=int, default=32, help="mask slots per image (default 32)")
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=None,
        help="smallest confidence of a kept mask (default: OpenSegTeacher.pseudo_label's)",
    )
    parser.add_argument(
        "--nms-iou", type=float, default=None, help="largest IoU with a better kept mask (default: the teacher's)"
    )
    parser.add_argument("--shard-size", type=int, default=512, help="examples per shard (default 512)")
    parser.add_argument("--limit", type=int, default=None, help="label only the first N examples")
    return parser


def run(args):
    """Loads the teacher and the images, writes the pseudo labels; returns the exit status."""
    import tensorflow_datasets as tfds

    import keras_openseg.datasets  # noqa: F401  (registers the package's tfds builders)
    from keras_openseg.data.pseudo_labels import write_pseudo_labels
    from keras_openseg.models import OpenSegTeacher

    # Bad input (a missing preset or dataset) raises; keras_openseg.cli reports it as one line, status 2.
    teacher = OpenSegTeacher.from_preset(args.teacher)
    builder = tfds.builder(args.dataset, data_dir=args.data_dir)
    builder.download_and_prepare()
    # A fixed order: shard i must hold the same examples in every run.
    dataset = builder.as_dataset(split=args.split, shuffle_files=False)
    keep = [key for key in ("image", "captions") if key in builder.info.features]
    dataset = dataset.map(lambda example: {key: example[key] for key in keep})
    num_examples = builder.info.splits[args.split].num_examples
    if args.limit is not None:
        dataset, num_examples = dataset.take(args.limit), min(args.limit, num_examples)
    selection = {"score_threshold": args.score_threshold, "nms_iou": args.nms_iou}
    index = write_pseudo_labels(
        teacher,
        dataset,
        args.output,
        image_size=args.image_size,
        batch_size=args.batch_size,
        max_masks=args.max_masks,
        shard_size=args.shard_size,
        num_examples=num_examples,
        **{name: value for name, value in selection.items() if value is not None},
    )
    print(f"{index['examples']} pseudo-labeled images in {index['chunks']} shards under {args.output}")
    return 0


def __getattr__(name):
    # `from keras_openseg.training.pseudo_label import write_pseudo_labels` (the writer's home before it moved to
    # keras_openseg.data) keeps working without loading TensorFlow for `keras-openseg pseudo-label --help`.
    if name == "write_pseudo_labels":
        from keras_openseg.data.pseudo_labels import write_pseudo_labels

        return write_pseudo_labels
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
