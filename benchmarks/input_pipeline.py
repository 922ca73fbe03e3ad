"""Examples per second of the tf.data input pipeline on `openseg_shapes`, on a fixed number of CPU threads.

    python benchmarks/input_pipeline.py                          # default config, 2 threads
    python benchmarks/input_pipeline.py --config tiny --json out.json

Prepares `openseg_shapes/<config>` (timing the build when it is not there yet) and its caption words (spaCy,
cached beside the data), then times, after a warm-up, batches of:

- `train`: panoptic masks + captions -> jitter, crop, flip, masks, kp word dropping, embedding lookup;
- `train_mix`: the same mixed with equal probability with a caption-only copy of the data (the paper's
  COCO + Localized Narratives mixture);
- `eval`: image + semantic label map padded to a multiple of 32.

TensorFlow's thread pools and the datasets' private pools are set to `--threads`, so the figure stands for
a machine with that many cores. The word table holds random 384-d vectors (MiniLM's size): lookups cost the
same whatever the encoder. The pipeline does not depend on KERAS_BACKEND.
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

COLUMNS = [
    "pipeline",
    "config",
    "image_size",
    "mask_size",
    "max_masks",
    "batch_size",
    "threads",
    "examples_per_s",
    "ms_per_batch",
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="default", choices=["tiny", "default", "large"])
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "keras_openseg_benchmark_tfds"))
    parser.add_argument("--image-size", type=int, default=None, help="training crop (default: the config's size)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=40, help="timed batches per pipeline")
    parser.add_argument("--max-masks", type=int, default=16)
    parser.add_argument("--max-words", type=int, default=16)
    parser.add_argument("--mask-size", type=int, default=None, help="label mask side (default: the image size)")
    parser.add_argument("--extractor", default="spacy", choices=["spacy", "whitespace"])
    parser.add_argument("--json", help="write the rows (and preparation times) as JSON here")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    import tensorflow_datasets as tfds
    from _timing import print_table

    import keras_openseg.datasets.openseg_shapes  # noqa: F401  (registers the builder)
    from keras_openseg.data import TrainingSource
    from keras_openseg.data import caption_vocabulary
    from keras_openseg.data import make_evaluation_dataset
    from keras_openseg.data import make_training_dataset
    from keras_openseg.text import WordEmbeddingTable

    name = f"openseg_shapes/{args.config}"
    builder = tfds.builder(name, data_dir=args.data_dir)
    prepare = {"build_s": None, "caption_words_s": None}
    if not builder.is_prepared():
        start = time.perf_counter()
        builder.download_and_prepare()
        prepare["build_s"] = time.perf_counter() - start
    image_size = args.image_size or builder.builder_config.image_size

    if args.extractor == "spacy":
        from keras_openseg.text import CaptionWordExtractor

        extractor = CaptionWordExtractor(cache=False)
    else:
        extractor = _WhitespaceExtractor()
    start = time.perf_counter()
    source = TrainingSource.from_tfds(name, "train", extractor, data_dir=args.data_dir, seed=0)
    prepare["caption_words_s"] = time.perf_counter() - start
    vocabulary = caption_vocabulary(source.caption_words)
    prepare["vocabulary_size"] = len(vocabulary)
    embeddings = np.random.default_rng(0).normal(size=(len(vocabulary), 384)).astype(np.float32)
    table = WordEmbeddingTable(vocabulary, embeddings, encoder_id="random-384")

    options = tf.data.Options()
    options.threading.private_threadpool_size = args.threads
    common = dict(
        image_size=image_size,
        batch_size=args.batch_size,
        max_masks=args.max_masks,
        max_words=args.max_words,
        mask_size=args.mask_size,
        seed=0,
    )
    captions_only = TrainingSource(
        source.dataset.map(lambda e: {"image": e["image"], "captions": e["captions"]}),
        caption_words=source.caption_words,
        name="caption-only copy",
    )
    pipelines = {
        "train": make_training_dataset(source, table, **common),
        "train_mix": make_training_dataset([source, captions_only], table, **common),
        "eval": make_evaluation_dataset(builder.as_dataset(split="validation").repeat(), batch_size=args.batch_size),
    }
    rows = []
    for pipeline, dataset in pipelines.items():
        seconds = _seconds_per_batch(dataset.with_options(options), args.batches)
        rows.append(
            {
                "pipeline": pipeline,
                "config": args.config,
                "image_size": image_size,
                "mask_size": args.mask_size or image_size,
                "max_masks": args.max_masks,
                "batch_size": args.batch_size,
                "threads": args.threads,
                "examples_per_s": args.batch_size / seconds,
                "ms_per_batch": 1000 * seconds,
            }
        )
    print_table(rows, COLUMNS)
    print(", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in prepare.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "prepare": prepare}, f, indent=2)
    return 0


def _seconds_per_batch(dataset, batches, warmup=5):
    iterator = iter(dataset)
    for _ in range(warmup):  # tracing, file opening, filling the shuffle buffer
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return (time.perf_counter() - start) / batches


class _WhitespaceExtractor:
    """Words longer than three letters: stands in for spaCy when only the pipeline is of interest."""

    def extract(self, captions):
        return [[w.strip(".,").lower() for w in c.split() if len(w.strip(".,")) > 3] for c in captions]


if __name__ == "__main__":
    sys.exit(main())
