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
