"""One 3x3 convolution forward and forward+backward per backend, against the matmul peak of the same run.

    python benchmarks/conv_gradient.py                      # every backend here
    python benchmarks/conv_gradient.py --size 64 --json out.json

The OpenSeg heads are 3x3 convolutions at stride 4 (`benchmarks/throughput.py`: 53 % of the reference
config's FLOPs), so a backend's training speed follows how fast it runs their gradients. This isolates that:
a `Conv2D(C, 3)` on `[B, S, S, C]` (default the reference head: B=4, S=128, C=256), compiled (JAX jit,
TensorFlow XLA; PyTorch eager), forward alone and forward + gradients of the input and the kernel (3x the
forward's FLOPs). Each backend runs in its own interpreter; `fwd_mfu` / `train_mfu` are achieved GFLOP/s
over that interpreter's float32 matmul peak.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import backend_available  # noqa: E402
from _timing import interleaved_seconds  # noqa: E402
from _timing import matmul_peak_gflops  # noqa: E402
from _timing import print_table  # noqa: E402
from _timing import run_in_backend  # noqa: E402

COLUMNS = ["backend", "fwd_gflops", "train_gflops", "matmul_peak_gflops", "fwd_mfu", "train_mfu", "train_over_fwd"]


def measure(batch, size, channels, repeats):
    import keras
    import numpy as np
    from keras import ops

    name = keras.backend.backend()
    x = np.random.default_rng(0).normal(size=(batch, size, size, channels)).astype("float32")
    layer = keras.layers.Conv2D(channels, 3, padding="same")
    layer(x)

    def loss(output):
        return ops.sum(output * output)

    if name == "jax":
        import jax

        variables = [v.value for v in layer.trainable_variables]
        forward = jax.jit(lambda variables, x: layer.stateless_call(variables, [], x)[0])
        gradient = jax.jit(jax.grad(lambda v, x: loss(layer.stateless_call(v, [], x)[0]), argnums=(0, 1)))
        programs = {"fwd": lambda: forward(variables, x), "train": lambda: gradient(variables, x)}
    elif name == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)

        @tf.function(jit_compile=True)
        def gradient(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = loss(layer(x))
            return tape.gradient(value, layer.trainable_variables + [x])

        forward = tf.function(layer.__call__, jit_compile=True)
        programs = {"fwd": lambda: forward(x), "train": lambda: gradient(x)}
    else:
        import torch

        x = torch.tensor(x, requires_grad=True)
        weights = [v.value for v in layer.trainable_variables] + [x]
        programs = {
            "fwd": lambda: layer(x).detach(),
            "train": lambda: torch.autograd.grad(loss(layer(x)), weights),
        }
    timed = interleaved_seconds(programs, repeats=repeats, warmup=2)
    peak = matmul_peak_gflops()
    flops = 2 * batch * size * size * 9 * channels * channels
    fwd = flops / timed["fwd"]["min"] / 1e9
    train = 3 * flops / timed["train"]["min"] / 1e9
    return {
        "backend": name,
        "fwd_gflops": fwd,
        "train_gflops": train,
        "matmul_peak_gflops": peak,
        "fwd_mfu": fwd / peak,
        "train_mfu": train / peak,
        "train_over_fwd": train / fwd,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    parser.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    shape = [str(args.batch), str(args.size), str(args.channels), str(args.repeats)]
    if args._worker:
        print("RESULT " + json.dumps(measure(args.batch, args.size, args.channels, args.repeats)))
        return
    rows = []
    for name in args.backends.split(","):
        if not backend_available(name):
            print(f"skipping {name}: cannot be imported here", file=sys.stderr)
            continue
        worker_args = [
            "--_worker",
            "--batch",
            shape[0],
            "--size",
            shape[1],
            "--channels",
            shape[2],
            "--repeats",
            shape[3],
        ]
        rows.append(run_in_backend(name, os.path.abspath(__file__), worker_args))
    print_table(rows, COLUMNS)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(rows, file, indent=2)


if __name__ == "__main__":
    main()
