"""Whether an OpenSeg model's train and predict steps should be XLA-compiled, per backend, device and dtype."""

import keras

# Measured with benchmarks/throughput.py (reference config, images/s with jit_compile on vs off; figures in
# benchmarks/README.md). On a CPU, TensorFlow's own graph runtime calls oneDNN, whose bfloat16 kernels use
# AMX / AVX512_BF16; XLA:CPU compiles its own loops and does not reach them, so XLA makes bfloat16 slower
# than float32 there.
CPU_JIT_COMPILE = {
    ("tensorflow", "float32"): False,
    ("tensorflow", "bfloat16"): False,
    ("tensorflow", "float16"): False,
}


# CPU flags (Linux /proc/cpuinfo names) of the bfloat16 units oneDNN uses: AMX tiles (Intel Sapphire Rapids and
# later) run bfloat16 matmuls several times float32's speed; AVX512_BF16 (Intel Cooper Lake and later, AMD Zen 4
# and later) packs two bfloat16 products per float32 lane, at most 2x float32's FLOP/s.
BFLOAT16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_bfloat16_units(cpuinfo="/proc/cpuinfo"):
    """The bfloat16 units this CPU reports, as `BFLOAT16_CPU_FLAGS` names (empty where none or not Linux).

    Example:

    >>> set(cpu_bfloat16_units()) <= set(BFLOAT16_CPU_FLAGS)
    True
    """
    try:
        with open(cpuinfo, encoding="utf-8") as file:
            for line in file:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return tuple(flag for flag in BFLOAT16_CPU_FLAGS if flag in flags)
    except OSError:
        pass
    return ()


def fast_bfloat16(backend=None, on_cpu=None, cpuinfo="/proc/cpuinfo"):
    """Whether `mixed_bfloat16` is expected to run faster than float32 here.

    True on TensorFlow and PyTorch on a CPU with bfloat16 units (`cpu_bfloat16_units`): their oneDNN kernels
    use them. False on JAX on a CPU (jaxlib 0.10's XLA:CPU runs bfloat16 no faster than float32 there, see
    benchmarks/README.md) and on a CPU without the units; False on accelerators too, where the choice is the
    user's (`--mixed-precision`), since it depends on the chip.

    Example:

    >>> fast_bfloat16("jax", on_cpu=True)
    False
    """
    backend = backend or keras.backend.backend()
    if on_cpu is None:
        on_cpu = _on_cpu(backend)
    if not on_cpu or backend not in ("tensorflow", "torch"):
        return False
    return bool(cpu_bfloat16_units(cpuinfo))


def cpu_backend_advice(backend=None, on_cpu=None, cpuinfo="/proc/cpuinfo"):
    """A line saying which backend is fastest on this CPU, when it is not the current one; else None.

    On a CPU with bfloat16 units, JAX (XLA:CPU) runs bfloat16 no faster than float32 while TensorFlow and
    PyTorch (oneDNN) run it about 2x faster (benchmarks/README.md), so a JAX user is told to switch.

    Example:

    >>> cpu_backend_advice("tensorflow", on_cpu=True) is None
    True
    """
    backend = backend or keras.backend.backend()
    if backend != "jax":
        return None
    if on_cpu is None:
        on_cpu = _on_cpu(backend)
    units = cpu_bfloat16_units(cpuinfo)
    if not on_cpu or not units:
        return None
    return (
        f"this CPU has {' and '.join(units)}: TensorFlow and PyTorch run bfloat16 about 2x faster than float32 "
        "on it, JAX (XLA:CPU) does not; KERAS_BACKEND=tensorflow (or torch) is the fastest backend here"
    )


def _compute_dtype(dtype_policy):
    if dtype_policy is None:
        return keras.config.dtype_policy().compute_dtype
    if isinstance(dtype_policy, str):
        return keras.DTypePolicy(dtype_policy).compute_dtype
    return dtype_policy.compute_dtype


def _on_cpu(backend):
    if backend == "tensorflow":
        import tensorflow as tf

        return not (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() == "cpu"
    if backend == "torch":
        import torch

        return not torch.cuda.is_available()
    return True


def default_jit_compile(dtype_policy=None, backend=None, on_cpu=None):
    """The `jit_compile` to compile an OpenSeg task with: XLA where it is measured to help.

    - JAX: `True` (XLA is JAX's only compiler; without it every op is dispatched on its own).
    - TensorFlow on a CPU: `False`, whatever the dtype. TensorFlow's graph runtime runs the convolutions and
      matmuls in oneDNN, which uses the CPU's AMX / AVX512_BF16 units for bfloat16; XLA:CPU does not, so
      under `mixed_bfloat16` XLA gave a fraction of oneDNN's speed (benchmarks/README.md).
    - TensorFlow on a GPU or TPU: `True` (XLA fuses the elementwise work around the cuDNN / TPU kernels).
    - PyTorch: `False` (Keras runs torch eagerly; `torch.compile` is not measured here).

    Args:
        dtype_policy: string, `keras.DTypePolicy` or None. The model's dtype policy; None reads the global
            policy. Defaults to `None`.
        backend: string or None. `"tensorflow"`, `"jax"` or `"torch"`; None is the current Keras backend.
            Defaults to `None`.
        on_cpu: bool or None. Whether the backend computes on a CPU; None asks the backend. Defaults to
            `None`.

    Returns:
        bool, for `model.compile(jit_compile=...)`.

    Example:

    >>> default_jit_compile("mixed_bfloat16", backend="tensorflow", on_cpu=True)
    False
    >>> default_jit_compile("float32", backend="jax", on_cpu=True)
    True
    """
    backend = backend or keras.backend.backend()
    if backend not in ("tensorflow", "jax", "torch"):
        raise ValueError(f"`backend` must be 'tensorflow', 'jax' or 'torch'. Received: backend={backend!r}")
    compute_dtype = _compute_dtype(dtype_policy)
    if backend == "jax":
        return True
    if backend == "torch":
        return False
    if on_cpu is None:
        on_cpu = _on_cpu(backend)
    if not on_cpu:
        return True
    return CPU_JIT_COMPILE.get((backend, compute_dtype), False)
