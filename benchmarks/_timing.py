"""Timing helpers shared by the benchmarks: best-of timing, the machine's matmul peak, FLOP counts.

Absolute times drift on shared machines, so every benchmark reports ratios measured in one process:
achieved FLOP/s over the matmul peak measured seconds earlier by the same backend.
"""

import os
import subprocess
import sys
import time

import numpy as np


def backend():
    import keras

    return keras.backend.backend()


def block(x):
    """Waits for asynchronous backends (JAX dispatch, torch) so the clock measures the work."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        jax.block_until_ready(x)
    return x


def median_seconds(fn, repeats=5, warmup=2):
    """Median wall time of `fn()` after `warmup` untimed calls (compilation happens there)."""
    for _ in range(warmup):
        block(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        block(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def matmul_peak_gflops(n=2048, repeats=7, dtype="float32"):
    """Best float32 matmul GFLOP/s of the current backend on this machine (compiled where it can be)."""
    name = backend()
    a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    b = np.random.default_rng(1).standard_normal((n, n)).astype(dtype)
    if name == "jax":
        import jax
        import jax.numpy as jnp

        fn = jax.jit(jnp.matmul)
        xa, xb = jnp.asarray(a), jnp.asarray(b)
        run = lambda: fn(xa, xb)  # noqa: E731
    elif name == "tensorflow":
        import tensorflow as tf

        fn = tf.function(tf.matmul, jit_compile=True)
        xa, xb = tf.constant(a), tf.constant(b)
        run = lambda: fn(xa, xb).numpy()  # noqa: E731
    else:
        import torch

        xa, xb = torch.from_numpy(a), torch.from_numpy(b)
        run = lambda: torch.matmul(xa, xb)  # noqa: E731
    for _ in range(2):
        block(run())
    best = min(_timed(run) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn):
    start = time.perf_counter()
    block(fn())
    return time.perf_counter() - start


def jax_flops(model, inputs):
    """FLOPs of one inference call from XLA's cost analysis of the compiled program (JAX backend only)."""
    import jax

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def forward(trainable, non_trainable, inputs):
        outputs, _ = model.stateless_call(trainable, non_trainable, inputs, training=False)
        return outputs

    cost = jax.jit(forward).lower(trainable, non_trainable, inputs).compile().cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost["flops"])


def run_in_backend(backend_name, script, args, env=None, timeout=3600):
    """Runs `script args` in a fresh interpreter with KERAS_BACKEND set; returns its stdout."""
    full_env = dict(os.environ, KERAS_BACKEND=backend_name, TF_CPP_MIN_LOG_LEVEL="3")
    full_env.update(env or {})
    result = subprocess.run(
        [sys.executable, script, *args], env=full_env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"{script} on {backend_name} failed:\n{result.stderr[-4000:]}")
    return result.stdout


def print_table(rows, columns):
    """Prints rows (dicts) as an aligned text table with the given columns."""
    def fmt(value):
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
        return "-" if value is None else str(value)

    cells = [[fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))
