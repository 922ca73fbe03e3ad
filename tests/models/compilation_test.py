"""default_jit_compile: XLA where it was measured to help (benchmarks/README.md), per backend, device and dtype."""

import keras
import pytest
from tiny_openseg import tiny_model

from keras_openseg.models.compilation import cpu_backend_advice
from keras_openseg.models.compilation import cpu_bfloat16_units
from keras_openseg.models.compilation import default_jit_compile
from keras_openseg.models.compilation import fast_bfloat16


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


def _cpuinfo(tmp_path, flags):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: test cpu\nflags\t\t: fpu sse2 avx2 {flags}\n\n")
    return str(path)


@pytest.mark.parametrize(
    "flags, units",
    [
        ("avx512f", ()),
        ("avx512f avx512_bf16", ("avx512_bf16",)),
        ("amx_tile amx_bf16 avx512_bf16", ("amx_bf16", "avx512_bf16")),
    ],
)
def test_cpu_bfloat16_units_read_the_cpu_flags(tmp_path, flags, units):
    assert cpu_bfloat16_units(_cpuinfo(tmp_path, flags)) == units


def test_cpu_bfloat16_units_without_cpuinfo(tmp_path):
    assert cpu_bfloat16_units(str(tmp_path / "missing")) == ()


def test_fast_bfloat16_only_on_onednn_backends_of_a_cpu_with_the_units(tmp_path):
    with_units, without = _cpuinfo(tmp_path, "avx512_bf16"), str(tmp_path / "missing")
    assert fast_bfloat16("tensorflow", on_cpu=True, cpuinfo=with_units) is True
    assert fast_bfloat16("torch", on_cpu=True, cpuinfo=with_units) is True
    assert fast_bfloat16("jax", on_cpu=True, cpuinfo=with_units) is False  # XLA:CPU: bf16 no faster than fp32
    assert fast_bfloat16("tensorflow", on_cpu=True, cpuinfo=without) is False
    assert fast_bfloat16("torch", on_cpu=False, cpuinfo=with_units) is False  # accelerators: the user's choice


def test_task_compile_follows_the_default():
    """OpenSegTask.compile's "auto" is default_jit_compile; an explicit value is kept."""
    model = tiny_model()
    model.compile()
    expected = default_jit_compile(model.dtype_policy)
    assert bool(model.jit_compile) is expected
    model.compile(jit_compile=False)
    assert model.jit_compile is False


def test_jax_users_on_a_bfloat16_cpu_are_told_the_fastest_backend(tmp_path):
    with_units = _cpuinfo(tmp_path, "avx512_bf16")
    advice = cpu_backend_advice("jax", on_cpu=True, cpuinfo=with_units)
    assert "KERAS_BACKEND=tensorflow" in advice and "avx512_bf16" in advice
    assert cpu_backend_advice("jax", on_cpu=True, cpuinfo=str(tmp_path / "missing")) is None
    assert cpu_backend_advice("jax", on_cpu=False, cpuinfo=with_units) is None
    assert cpu_backend_advice("torch", on_cpu=True, cpuinfo=with_units) is None
