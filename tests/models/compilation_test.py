"""default_jit_compile: XLA where it was measured to help (benchmarks/README.md), per backend, device and dtype."""

import keras
import pytest

from keras_openseg.models.compilation import default_jit_compile


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16", "bfloat16", "mixed_float16"])
def test_choice_per_backend_and_device(policy):
    assert default_jit_compile(policy, backend="jax", on_cpu=True) is True
    assert default_jit_compile(policy, backend="jax", on_cpu=False) is True
    assert default_jit_compile(policy, backend="torch", on_cpu=True) is False
    # TensorFlow on a CPU: oneDNN's graph kernels beat XLA:CPU (bfloat16 most of all); XLA on accelerators.
    assert default_jit_compile(policy, backend="tensorflow", on_cpu=True) is False
    assert default_jit_compile(keras.DTypePolicy(policy), backend="tensorflow", on_cpu=False) is True


def test_defaults_read_the_global_policy_and_the_current_backend():
    expected = default_jit_compile("float32", backend=keras.backend.backend())
    assert default_jit_compile() is expected


def test_unknown_backend():
    with pytest.raises(ValueError, match="`backend`"):
        default_jit_compile("float32", backend="numpy")
