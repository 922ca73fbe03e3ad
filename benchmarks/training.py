"""Training examples per second of the OpenSeg recipe on openseg_shapes, per backend, with the input wait,
and the scaling of JAX `DataParallel` over simulated devices.

    python benchmarks/training.py                                   # every backend; JAX on 1, 2 and 4 devices
    python benchmarks/training.py --backends jax --devices 1,4 --json out.json
    python benchmarks/training.py --architecture small --image-size 128 --config default
    python benchmarks/training.py --backends tensorflow,torch --devices 1 --architecture demo --image-size 96 \
        --batch-size 16 --config default --precision float32,bfloat16      # the demo's step, both precisions

Each (backend, precision, device count) runs in its own interpreter, since the backend and the device count
are fixed when it starts (JAX devices are simulated with `--xla_force_host_platform_device_count`). The run builds what
`keras-openseg train` builds: the tf.data pipeline of `keras_openseg.data` (jitter, crop, flip, masks, kp
word dropping), the model of `--architecture` (random weights, nothing downloaded), the recipe's optimizer,
and under several JAX devices `keras.distribution.DataParallel` with the unsync grounding loss. Then, after
warm-up steps (compilation):

- `fit_examples_per_s`, `ms_per_step` (mean), `ms_per_step_median`: `model.fit` over `--steps` steps, timed
  from one step's end to the next (input prefetched and overlapped, as in training);
- `input_wait`: the fraction of the training time spent waiting for the next batch. On JAX and PyTorch it
  is timed inside `fit` (the gaps between one step's end and the next one's begin, where fit fetches the
  batch). TensorFlow fetches inside its compiled step, so there a second loop times `next(iterator)` apart
  from `train_on_batch` (`loop_ms_per_step`; on TensorFlow it costs what fit's step costs, on JAX more, as
  `train_on_batch` copies the variables back after every call).

The per-device batch is fixed (`--batch-size`), so N devices train on N times the examples per step (weak
scaling); `scaling_efficiency` is fit examples/s over N times the 1-device figure. The simulated devices are
threads of one process sharing this machine's cores (2 on the development machine) and XLA already spreads
one device's work over all cores, so no speed-up is expected here: the rows show that the distributed path
runs and what it costs, not what N accelerators would give. The word table holds random 384-d vectors
(all-MiniLM-L6-v2's size): lookups cost the same whatever the encoder.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

COLUMNS = [
    "backend",
    "precision",
    "devices",
    "global_batch",
    "fit_examples_per_s",
    "ms_per_step",
    "ms_per_step_median",
    "input_wait",
    "loop_ms_per_step",
    "scaling_efficiency",
]
EMBEDDING_DIM = 384


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--devices", default="1,2,4", help="JAX device counts (other backends run on 1)")
    parser.add_argument("--config", default="tiny", choices=["tiny", "default", "large"], help="openseg_shapes config")
    parser.add_argument("--architecture", default="tiny", help="tiny or small (random weights)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4, help="per-device batch")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument(
        "--precision",
        default="float32",
        help="comma-separated float32 / bfloat16 (mixed_bfloat16: bfloat16 compute, float32 variables and losses)",
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation)")
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "keras_openseg_benchmark_tfds"))
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # "BACKEND:DEVICES:PRECISION"
    args = parser.parse_args(argv)
    precisions = [item.strip() for item in args.precision.split(",") if item.strip()]
    unknown = sorted(set(precisions) - {"float32", "bfloat16"})
    if unknown or not precisions:
        parser.error(f"--precision takes float32 and/or bfloat16. Received: {args.precision!r}")
    args.precisions = precisions
    return args


class _CaptionWords:
    """Caption words without spaCy (their extraction is cached and no part of a training step)."""

    def extract(self, captions):
        return [list(dict.fromkeys(word.strip(".,").lower() for word in caption.split())) for caption in captions]


class _StepClock:
    """Keras callback noting when each training step begins and ends.

    On JAX and PyTorch, `fit` fetches the next batch between one step's end and the next one's begin, so
    those gaps are the input wait. On TensorFlow the fetch happens inside the compiled step.
    """

    def __init__(self):
        import keras

        self.callback = keras.callbacks.LambdaCallback(on_train_batch_begin=self._begin, on_train_batch_end=self._end)
        self.begins, self.ends = [], []

    def _begin(self, batch, logs=None):
        self.begins.append(time.perf_counter())

    def _end(self, batch, logs=None):
        if logs:
            float(logs["loss"])  # the step has finished, not only been dispatched
        self.ends.append(time.perf_counter())

    def input_wait(self, skip):
        """Fraction of the time from the end of step `skip` to the last end spent before a step began."""
        gaps = [begin - end for begin, end in zip(self.begins[skip + 1 :], self.ends[skip:])]
        return sum(gaps) / (self.ends[-1] - self.ends[skip])


def _to_numpy(batch):
    import tensorflow as tf

    return tf.nest.map_structure(lambda tensor: tensor.numpy(), batch)


def run_worker(args):
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_openseg.distribution import Distribution
    from keras_openseg.text import WordEmbeddingTable
    from keras_openseg.training import TrainingConfig
    from keras_openseg.training import build_model
    from keras_openseg.training import build_optimizer
    from keras_openseg.training import build_sources
    from keras_openseg.training import build_training_dataset
    from keras_openseg.training import configure_grounding_loss

    backend, devices, precision = args.worker.split(":")
    devices = int(devices)
    config = TrainingConfig(
        datasets=(f"openseg_shapes/{args.config}",),
        data_dir=args.data_dir,
        image_size=args.image_size,
        batch_size=args.batch_size * devices,
        steps=args.warmup + args.steps,
        distribution="data_parallel" if devices > 1 else "none",
        architecture=args.architecture,
        output=tempfile.mkdtemp(),
        mixed_precision=None if precision == "float32" else precision,
    )
    if config.mixed_precision:
        keras.config.set_dtype_policy(f"mixed_{config.mixed_precision}")  # as train() does
    distribution = Distribution(config.distribution)
    sources = build_sources(config, _CaptionWords())
    words = sorted({word for source in sources for words in source.caption_words.values() for word in words})
    vectors = np.random.default_rng(0).normal(size=(len(words), EMBEDDING_DIM)).astype("float32")
    table = WordEmbeddingTable(words, vectors, encoder_id="random-benchmark-vectors")
    dataset = build_training_dataset(config, table, sources, distribution)
    with distribution.scope():
        model = build_model(config, embedding_dim=EMBEDDING_DIM)
        configure_grounding_loss(model, config)
        model.compile(optimizer=build_optimizer(config))

    # One fit: warm-up steps (compilation, pipeline start), then the timed ones, step end to step end.
    clock = _StepClock()
    total_steps = args.warmup + args.steps
    model.fit(dataset, steps_per_epoch=total_steps, epochs=1, shuffle=False, callbacks=[clock.callback], verbose=0)
    fit_step_seconds = np.diff(clock.ends[args.warmup - 1 :])

    # fit maps the preprocessor over the tf.data input (keras_hub PipelineModel); the loop does the same, and
    # calls keras' own train_on_batch (keras_hub's converts a dict `y` to one tensor and fails on ours).
    iterator = iter(dataset.map(model.preprocess_samples, num_parallel_calls=tf.data.AUTOTUNE))
    waits, steps = [], []
    for index in range(args.warmup + args.steps):
        start = time.perf_counter()
        x, y = next(iterator)
        if backend != "tensorflow":
            x, y = _to_numpy((x, y))  # what fit does on these backends
        fetched = time.perf_counter()
        logs = keras.Model.train_on_batch(model, x, y, return_dict=True)
        float(logs["loss"])  # waits for the step to finish
        done = time.perf_counter()
        if index >= args.warmup:
            waits.append(fetched - start)
            steps.append(done - fetched)
    loop_seconds = sum(waits) + sum(steps)
    return {
        "backend": backend,
        "precision": precision,
        "devices": devices,
        "replicas": distribution.num_replicas,
        "global_batch": config.batch_size,
        "fit_examples_per_s": config.batch_size / float(np.mean(fit_step_seconds)),
        "ms_per_step": 1000 * float(np.mean(fit_step_seconds)),
        "ms_per_step_median": 1000 * float(np.median(fit_step_seconds)),
        "loop_examples_per_s": config.batch_size * args.steps / loop_seconds,
        # JAX, PyTorch: measured inside fit; TensorFlow fetches inside its compiled step, so there the loop
        # (whose train_on_batch costs what fit's step costs) measures it.
        "input_wait": sum(waits) / loop_seconds if backend == "tensorflow" else clock.input_wait(args.warmup - 1),
        "loop_input_wait": sum(waits) / loop_seconds,
        "loop_ms_per_step": 1000 * float(np.mean(steps)),
        "image_size": args.image_size,
        "architecture": args.architecture,
        "keras": keras.__version__,
    }


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(run_worker(args)))
        return 0
    from _timing import print_table

    rows = []
    for backend in args.backends.split(","):
        counts = [int(count) for count in args.devices.split(",")] if backend == "jax" else [1]
        for precision in args.precisions:
            for devices in counts:
                env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
                if backend == "jax":
                    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
                worker = ["--worker", f"{backend}:{devices}:{precision}"]
                command = [sys.executable, os.path.abspath(__file__), *(argv or sys.argv[1:]), *worker]
                completed = subprocess.run(command, env=env, capture_output=True, text=True)
                results = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
                if completed.returncode or not results:
                    print(
                        f"{backend} {precision} on {devices} device(s) failed:\n{completed.stderr[-3000:]}",
                        file=sys.stderr,
                    )
                    continue
                rows.append(json.loads(results[-1][len("RESULT ") :]))
    for row in rows:
        single = [
            r
            for r in rows
            if r["backend"] == row["backend"] and r["precision"] == row["precision"] and r["devices"] == 1
        ]
        if single:
            row["scaling_efficiency"] = row["fit_examples_per_s"] / (row["devices"] * single[0]["fit_examples_per_s"])
    if rows:
        print_table(rows, COLUMNS)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(rows, file, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
