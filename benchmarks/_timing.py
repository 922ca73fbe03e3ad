"""Timing helpers shared by the benchmarks: compiled forward passes, interleaved timing, the machine's matmul
peak, XLA cost and memory analysis, per-backend worker processes and tables.

Absolute times drift on shared machines, so every benchmark reports ratios measured in one process: achieved
FLOP/s over the matmul peak measured by the same backend in the same run, and the times of the programs it
compares taken in turns (round-robin), so a load spike slows all of them alike.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np


def backend():
    import keras

    return keras.backend.backend()


def on_accelerator():
    """Whether the current backend computes on a GPU/TPU (by default placement) rather than the CPU."""
    name = backend()
    if name == "jax":
        import jax

        return jax.default_backend() != "cpu"
    if name == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))
    import torch

    return torch.cuda.is_available()


def device_description():
    """A short description of the device the current backend computes on."""
    name = backend()
    if name == "jax":
        import jax

        device = jax.devices()[0]
        return f"jax:{device.platform}:{getattr(device, 'device_kind', '')} x{jax.device_count()}"
    if name == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
            return f"tensorflow:gpu:{details.get('device_name', '')} x{len(gpus)}"
        return f"tensorflow:cpu x{os.cpu_count()}"
    import torch

    if torch.cuda.is_available():
        return f"torch:cuda:{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"torch:cpu threads={torch.get_num_threads()}"


def sync(x=None):
    """Waits until the work queued by the backend (JAX dispatch, CUDA streams) is done, so clocks measure it."""
    name = backend()
    if name == "jax":
        import jax

        jax.block_until_ready(x)
    elif name == "tensorflow":
        if on_accelerator():
            import tensorflow as tf

            tf.test.experimental.sync_devices()
    else:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
    return x


def to_device(tree):
    """numpy leaves -> backend tensors on the default device (so timed calls copy nothing from the host)."""
    import keras

    return keras.tree.map_structure(keras.ops.convert_to_tensor, tree)


def compiled_forward(model, jit_compile=True):
    """The inference call `model(x, training=False)` as the backend's compiled program.

    JAX: `jax.jit` of the stateless call (the variables are arguments, not constants). TensorFlow:
    `tf.function(jit_compile=jit_compile)` (XLA when True, TensorFlow's graph runtime with oneDNN when False).
    PyTorch: eager under `no_grad` (what Keras runs on torch by default).
    The outputs stay on the device; call `sync` before reading a clock.
    """
    name = backend()
    if name == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]

        @jax.jit
        def forward(trainable, non_trainable, x):
            return model.stateless_call(trainable, non_trainable, x, training=False)[0]

        run = lambda x: forward(trainable, non_trainable, x)  # noqa: E731
        run.lower = lambda x: forward.lower(trainable, non_trainable, x)
        return run
    if name == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda x: model(x, training=False), jit_compile=jit_compile, reduce_retracing=True)
    import torch

    def run(x):
        with torch.no_grad():
            return model(x, training=False)

    return run


def xla_analysis(lowered):
    """FLOPs and memory of a lowered JAX program (`jax.jit(f).lower(...)`) from XLA's own analyses.

    Returns a dict with `flops` (XLA's cost analysis: 2 per multiply-add, 1 per elementwise op),
    `temp_bytes` (the scratch memory XLA assigns besides arguments and outputs), `argument_bytes`,
    `output_bytes` and `peak_bytes` (their sum, an upper bound of what the program holds at once).
    """
    compiled = lowered.compile()
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    result = {"flops": float(cost.get("flops", 0.0))}
    memory = compiled.memory_analysis()
    if memory is not None:
        result["temp_bytes"] = int(memory.temp_size_in_bytes)
        result["argument_bytes"] = int(memory.argument_size_in_bytes)
        result["output_bytes"] = int(memory.output_size_in_bytes)
        result["peak_bytes"] = result["temp_bytes"] + result["argument_bytes"] + result["output_bytes"]
    return result


def jax_train_step_analysis(model, x, y):
    """XLA analysis of one compiled training step of a compiled Keras model (JAX backend)."""
    import jax

    state = (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in model.optimizer.variables],
        [v.value for v in model.metrics_variables],
    )
    step = jax.jit(lambda state, data: type(model).train_step(model, state, data))
    return xla_analysis(step.lower(state, (x, y)))


class PeakMemory:
    """Peak memory of the work between `reset()` and `peak_bytes()`, above the level at `reset()`.

    CPU: the process's peak resident set (Linux `VmHWM`, reset through `/proc/self/clear_refs`). GPU: the
    framework's allocator peak (TensorFlow `get_memory_info`, `torch.cuda.max_memory_allocated`; JAX has no
    reset, so use `xla_analysis` there). `peak_bytes()` is None where neither is available.
    """

    def __init__(self):
        self.accelerator = on_accelerator()
        self.name = backend()

    def _read(self):
        if self.accelerator:
            if self.name == "tensorflow":
                import tensorflow as tf

                info = tf.config.experimental.get_memory_info("GPU:0")
                return info["current"], info["peak"]
            if self.name == "torch":
                import torch

                return torch.cuda.memory_allocated(), torch.cuda.max_memory_allocated()
            return None
        try:
            fields = {}
            with open("/proc/self/status") as f:
                for line in f:
                    key, _, value = line.partition(":")
                    fields[key] = value
            return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024
        except (OSError, KeyError, ValueError):
            return None

    def reset(self):
        if self.accelerator:
            if self.name == "tensorflow":
                import tensorflow as tf

                tf.config.experimental.reset_memory_stats("GPU:0")
            elif self.name == "torch":
                import torch

                torch.cuda.reset_peak_memory_stats()
        else:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # resets VmHWM to the current resident set
            except OSError:
                pass
        reading = self._read()
        self.base = None if reading is None else reading[0]

    def peak_bytes(self):
        reading = self._read()
        if reading is None or self.base is None:
            return None
        return max(0, reading[1] - self.base)

    def peak_level_bytes(self):
        """The peak itself since `reset()` (not above the level at `reset()`), or None where unavailable."""
        reading = self._read()
        return None if reading is None or self.base is None else reading[1]


def interleaved_seconds(fns, repeats=5, warmup=1):
    """Wall times of each `fns[name]()`, the calls taken in turns so load drifts hit all of them alike.

    Each fn is called `warmup` times first (compilation and autotuning happen there). Returns
    `{name: {"median": s, "min": s, "times": [...], "cpu_min": s}}`. On a shared machine the minimum is the
    stable figure (the run least disturbed by others); the benchmarks report it, and keep every time in their
    JSON. `cpu_min` is the least CPU time of this process (all its threads) per call: on a CPU crowded by
    other processes it still counts only this work, so FLOPs per CPU-second over the matmul's FLOPs per
    CPU-second (`mfu_cputime`) is the steadier ratio there (it counts idle-spinning pool threads as busy).
    """
    for fn in fns.values():
        for _ in range(warmup):
            sync(fn())
    times = {name: [] for name in fns}
    cpu_times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            sync(fn())
            times[name].append(time.perf_counter() - start)
            cpu_times[name].append(time.process_time() - cpu_start)
    return {
        name: {
            "median": float(np.median(t)),
            "min": float(np.min(t)),
            "times": [float(v) for v in t],
            "cpu_min": float(np.min(cpu_times[name])),
        }
        for name, t in times.items()
    }


def matmul_peak_gflops(dtype="float32", n=None, repeats=7, cpu_time=False):
    """Best GFLOP/s of an `n x n` matmul in `dtype` on the current backend and device, XLA-compiled where it can
    be (TensorFlow and JAX). On a CPU that is not the backend's fastest path for every dtype: `peak_gflops`
    measures that one.

    `n` defaults to 2048 on a CPU and 8192 on an accelerator (big enough to saturate either). The precision
    is the backend's default for that dtype (e.g. TF32 for float32 on recent NVIDIA GPUs under JAX and
    TensorFlow), the same the model's convolutions and matmuls get. With `cpu_time`, returns the pair
    (per wall-clock second, per CPU second of this process; see `interleaved_seconds`).
    """
    name = backend()
    accelerator = on_accelerator()
    n = n or (8192 if accelerator else 2048)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype("float32")
    b = rng.standard_normal((n, n)).astype("float32")
    if name == "jax":
        import jax
        import jax.numpy as jnp

        fn = jax.jit(jnp.matmul)
        xa, xb = jnp.asarray(a, dtype), jnp.asarray(b, dtype)
        run = lambda: fn(xa, xb)  # noqa: E731
    elif name == "tensorflow":
        import tensorflow as tf

        fn = tf.function(tf.matmul, jit_compile=True)
        xa, xb = tf.cast(tf.constant(a), dtype), tf.cast(tf.constant(b), dtype)
        if accelerator:
            run = lambda: fn(xa, xb)  # noqa: E731
        else:
            run = lambda: fn(xa, xb).numpy()  # noqa: E731
    else:
        import torch

        device = "cuda" if accelerator else "cpu"
        torch_dtype = getattr(torch, dtype)
        xa = torch.from_numpy(a).to(device=device, dtype=torch_dtype)
        xb = torch.from_numpy(b).to(device=device, dtype=torch_dtype)
        run = lambda: torch.matmul(xa, xb)  # noqa: E731
    timed = interleaved_seconds({"matmul": run}, repeats=repeats, warmup=2)["matmul"]
    flops = 2 * n**3
    if cpu_time:
        return flops / timed["min"] / 1e9, flops / timed["cpu_min"] / 1e9
    return flops / timed["min"] / 1e9


PEAK_MATMUL_N = 2048
# A 3x3 256 -> 256 convolution on a 128 x 128 feature map, batch 4, NHWC (FPN / head sized).
PEAK_CONV = dict(batch=4, size=128, channels=256, kernel=3)
PEAK_DTYPES = ("float32", "bfloat16")


def fastest_path():
    """What `peak_gflops` runs on the current backend: the fastest path its device has for dense math.

    TensorFlow: `tf.function` without XLA (oneDNN on a CPU, cuBLAS/cuDNN on a GPU): XLA:CPU does not reach
    oneDNN's AMX bfloat16 kernels. PyTorch: eager ATen (oneDNN on a CPU), convolutions in channels_last.
    JAX: `jax.jit` (XLA, the only path it has).
    """
    return {
        "tensorflow": "tf.function, no XLA (oneDNN / cuDNN)",
        "torch": "eager ATen, channels_last (oneDNN / cuDNN)",
        "jax": "jax.jit (XLA)",
    }[backend()]


def _peak_programs(dtype, matmul_n, conv):
    """`{"matmul": (run, flops), "conv": (run, flops)}` on the current backend's fastest path (inputs on the
    device, runs returning something `sync` can wait on)."""
    name = backend()
    accelerator = on_accelerator()
    rng = np.random.default_rng(0)
    n = matmul_n
    a = rng.standard_normal((n, n)).astype("float32")
    b = rng.standard_normal((n, n)).astype("float32")
    batch, size, channels, kernel = conv["batch"], conv["size"], conv["channels"], conv["kernel"]
    images = rng.standard_normal((batch, size, size, channels)).astype("float32")
    filters = (rng.standard_normal((kernel, kernel, channels, channels)) / (kernel * channels**0.5)).astype("float32")
    flops = {"matmul": 2.0 * n**3, "conv": 2.0 * batch * size * size * channels * channels * kernel * kernel}
    if name == "jax":
        import jax
        import jax.numpy as jnp

        matmul = jax.jit(jnp.matmul)
        convolve = jax.jit(
            lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        )
        xa, xb = jnp.asarray(a, dtype), jnp.asarray(b, dtype)
        xi, xw = jnp.asarray(images, dtype), jnp.asarray(filters, dtype)
        runs = {"matmul": lambda: matmul(xa, xb), "conv": lambda: convolve(xi, xw)}
    elif name == "tensorflow":
        import tensorflow as tf

        matmul = tf.function(tf.matmul, jit_compile=False)
        convolve = tf.function(lambda x, w: tf.nn.conv2d(x, w, 1, "SAME"), jit_compile=False)
        xa, xb = tf.cast(tf.constant(a), dtype), tf.cast(tf.constant(b), dtype)
        xi, xw = tf.cast(tf.constant(images), dtype), tf.cast(tf.constant(filters), dtype)
        if accelerator:
            runs = {"matmul": lambda: matmul(xa, xb), "conv": lambda: convolve(xi, xw)}
        else:  # reading one value waits for the op
            runs = {"matmul": lambda: matmul(xa, xb)[0, 0].numpy(), "conv": lambda: convolve(xi, xw)[0, 0, 0].numpy()}
    else:
        import torch

        device = "cuda" if accelerator else "cpu"
        torch_dtype = getattr(torch, dtype)
        xa = torch.from_numpy(a).to(device=device, dtype=torch_dtype)
        xb = torch.from_numpy(b).to(device=device, dtype=torch_dtype)
        channels_last = torch.channels_last
        xi = torch.from_numpy(images).permute(0, 3, 1, 2).to(device=device, dtype=torch_dtype)
        xi = xi.contiguous(memory_format=channels_last)
        xw = torch.from_numpy(filters).permute(3, 2, 0, 1).to(device=device, dtype=torch_dtype)
        xw = xw.contiguous(memory_format=channels_last)

        def convolve():
            with torch.no_grad():
                return torch.nn.functional.conv2d(xi, xw, padding=kernel // 2)

        runs = {"matmul": lambda: torch.matmul(xa, xb), "conv": convolve}
    return {key: (runs[key], flops[key]) for key in runs}


def peak_gflops(dtypes=PEAK_DTYPES, repeats=5, matmul_n=None, conv=None):
    """The backend's peak GFLOP/s per dtype on its fastest path (`fastest_path`): a square matmul and a 3x3
    convolution (`PEAK_CONV`), best of `repeats` timed calls after two warm-up calls, taken in turns.

    Returns `{dtype: {"matmul": GFLOP/s, "conv": GFLOP/s, "best": the larger}}` (also `..._cputime`, per CPU
    second of this process). A dtype the backend cannot run on its device maps to None.
    """
    matmul_n = matmul_n or (8192 if on_accelerator() else PEAK_MATMUL_N)
    conv = conv or PEAK_CONV
    result = {}
    for dtype in dtypes:
        try:
            programs = _peak_programs(dtype, matmul_n, conv)
            timed = interleaved_seconds({k: run for k, (run, _) in programs.items()}, repeats=repeats, warmup=2)
        except Exception as error:  # e.g. a dtype without kernels on this device
            result[dtype] = None
            print(f"peak_gflops: {backend()} {dtype}: {error}", file=sys.stderr)
            continue
        row = {}
        for key, (_, flops) in programs.items():
            row[key] = flops / timed[key]["min"] / 1e9
            row[f"{key}_cputime"] = flops / timed[key]["cpu_min"] / 1e9
        row["best"] = max(row["matmul"], row["conv"])
        row["best_cputime"] = max(row["matmul_cputime"], row["conv_cputime"])
        result[dtype] = row
    return result


def set_dtype(dtype):
    """Sets Keras' global dtype policy: `float32`, or mixed precision for `bfloat16` / `float16`."""
    import keras

    keras.config.set_dtype_policy("float32" if dtype == "float32" else f"mixed_{dtype}")


def cpu_description(cpuinfo="/proc/cpuinfo"):
    """The CPU's model name, core count and bfloat16 units (AMX, AVX512_BF16), as one line for the tables.

    The bfloat16 speed-up a CPU can give depends on these: AMX tiles run bfloat16 matmuls several times
    float32's speed, AVX512_BF16 alone at most 2x (two bfloat16 products per float32 lane).
    """
    from keras_openseg.models.compilation import cpu_bfloat16_units

    model = "unknown CPU"
    try:
        with open(cpuinfo, encoding="utf-8") as file:
            for line in file:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                    break
    except OSError:
        pass
    units = cpu_bfloat16_units(cpuinfo) or ("no bfloat16 units",)
    return f"{model}, {os.cpu_count()} cores, {' + '.join(units)}"


def load_average():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def run_in_backend(backend_name, script, args, env=None, timeout=7200):
    """Runs `script args` in a fresh interpreter with KERAS_BACKEND set; returns the JSON it printed last.

    The worker prints `RESULT <json>` as its last line. stderr goes to this process's stderr when `verbose`.
    """
    full_env = dict(os.environ, KERAS_BACKEND=backend_name, TF_CPP_MIN_LOG_LEVEL="3")
    full_env.update(env or {})
    result = subprocess.run(
        [sys.executable, script, *args], env=full_env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0 or "RESULT " not in result.stdout:
        raise RuntimeError(f"{os.path.basename(script)} on {backend_name} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.rsplit("RESULT ", 1)[1])


def backend_available(backend_name):
    """Whether the backend's framework can be imported here (checked in a subprocess, nothing imported here)."""
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend_name]
    check = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    return check.returncode == 0


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
    sys.stdout.flush()
