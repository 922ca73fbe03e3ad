"""glibc's mmap threshold: fixed, large freed blocks leave the process (`keras_openseg.training.host_memory`)."""

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

from keras_openseg.training import host_memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
needs_glibc = pytest.mark.skipif(not GLIBC, reason="mallopt's mmap threshold is glibc's (Linux) only")

# In a fresh interpreter: free one 8 MiB block (glibc maps it on its own and, by default, raises its threshold to
# 8 MiB when it is freed), then allocate 2 MiB blocks and report how many bytes glibc holds in mapped blocks
# (`mallinfo2().hblkhd`) beside them. Under glibc's own policy the 2 MiB blocks come from the heap, where a freed
# one stays resident; with the threshold fixed they are mapped, and unmapped when freed.
_PROBE = textwrap.dedent(
    """
    import ctypes, json, sys
    from keras_openseg.training.host_memory import fix_mmap_threshold

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.mallinfo2.restype = MallInfo2
    fixed = fix_mmap_threshold() if sys.argv[1] == "fixed" else None
    libc.free(libc.malloc(8 << 20))
    before = libc.mallinfo2().hblkhd
    blocks = [libc.malloc(2 << 20) for _ in range(4)]
    mapped = libc.mallinfo2().hblkhd - before
    for block in blocks:
        libc.free(block)
    print(json.dumps({"fixed": fixed, "mapped": mapped}))
    """
)


def _probe(policy):
    env = {k: v for k, v in os.environ.items() if k != host_memory.ENVIRONMENT_VARIABLE}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, policy], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


@needs_glibc
def test_fixed_threshold_maps_the_blocks_glibc_would_keep_in_its_heap():
    fixed = _probe("fixed")
    assert fixed["fixed"] is True
    assert fixed["mapped"] >= 4 * (2 << 20)
    # Without it glibc has raised its threshold past 2 MiB: the same blocks come from the heap.
    assert _probe("glibc")["mapped"] == 0


def test_another_c_library_is_left_alone(monkeypatch):
    # What the glibc-only test above cannot check off glibc (musl, macOS): there the function sets nothing and
    # says so.
    monkeypatch.delenv(host_memory.ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.setattr(host_memory, "_glibc", lambda: None)
    assert host_memory.fix_mmap_threshold() is False


def test_the_environment_variable_decides(monkeypatch):
    monkeypatch.setenv(host_memory.ENVIRONMENT_VARIABLE, "65536")
    assert host_memory.fix_mmap_threshold() is False


@pytest.mark.parametrize("threshold", [0, -1, 1.5, True, "128k"])
def test_bad_threshold_names_the_argument(threshold):
    with pytest.raises(ValueError, match="threshold"):
        host_memory.fix_mmap_threshold(threshold)


@pytest.mark.parametrize("flag", [True, False])
def test_the_command_line_fixes_it_with_low_host_memory(flag, monkeypatch, capsys):
    from keras_openseg import cli

    calls = []
    monkeypatch.setattr(cli, "fix_mmap_threshold", lambda: calls.append(True) or True)
    # A command that fails on its input returns 2; the threshold was set (or not) before it ran.
    argv = ["segment", "--preset", "no-such-preset", "--queries", "cat", "no-such-image.png"]
    assert cli.main(argv + ["--low-host-memory"] * flag) == 2
    capsys.readouterr()
    assert calls == [True] * flag


def test_the_command_line_says_when_low_host_memory_cannot_apply(monkeypatch, capsys):
    from keras_openseg import cli

    monkeypatch.setattr(cli, "fix_mmap_threshold", lambda: False)  # not glibc, or MALLOC_MMAP_THRESHOLD_ is set
    argv = ["segment", "--preset", "no-such-preset", "--queries", "cat", "no-such-image.png", "--low-host-memory"]
    assert cli.main(argv) == 2
    assert "--low-host-memory: not glibc, or MALLOC_MMAP_THRESHOLD_ decides" in capsys.readouterr().err


# --- XLA:CPU's memory-optimized schedule (JAX) ---------------------------------------------------------------

# In a fresh JAX interpreter: XLA's buffer assignment (temporaries; `benchmarks/_timing.py`'s analysis) of a
# training step of a small OpenSeg model at 128 px with 128 queries, where the queries' [N, pixels] tensors
# dominate as in the reference config.
_SCHEDULE_PROBE = textwrap.dedent(
    """
    import json, sys
    from keras_openseg.training.host_memory import use_memory_optimized_xla_schedule

    applied = use_memory_optimized_xla_schedule() if sys.argv[1] == "memory" else None
    import keras
    import numpy as np
    from keras_openseg.models import OpenSegBackbone, OpenSegModel

    keras.utils.set_random_seed(0)
    backbone = OpenSegBackbone.from_architecture("test_tiny", num_queries=128, position_grid=(32, 32))
    model = OpenSegModel(backbone)
    model.compile(optimizer=keras.optimizers.SGD(0.01), jit_compile=True)
    rng = np.random.default_rng(0)
    x = {
        "images": rng.uniform(0, 255, (2, 128, 128, 3)).astype("float32"),
        "word_embeddings": rng.standard_normal((2, 4, 8)).astype("float32"),
        "word_valid": np.ones((2, 4), bool),
    }
    y = {"masks": (rng.uniform(size=(2, 4, 128, 128)) > 0.5).astype("float32"), "mask_valid": np.ones((2, 4), bool)}
    keras.Model.train_on_batch(model, x, y)  # builds the optimizer's and the metrics' variables
    sys.path.insert(0, sys.argv[2])
    from _timing import jax_train_step_analysis

    temp = jax_train_step_analysis(model, x, y)["temp_bytes"]
    print(json.dumps({"applied": applied, "temp": temp}))
    """
)
BENCHMARKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "benchmarks")


def _schedule_probe(policy):
    env = dict(os.environ, KERAS_BACKEND="jax")
    env.pop("XLA_FLAGS", None)
    result = subprocess.run(
        [sys.executable, "-c", _SCHEDULE_PROBE, policy, BENCHMARKS],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.end_to_end("jax", covered_by="a JAX interpreter of its own either way: one backend's pass suffices")
@pytest.mark.skipif(
    not host_memory._jaxlib_knows_the_flag(), reason="the schedule flag is applied on jaxlib 0.10 only (checked there)"
)
def test_memory_optimized_schedule_shrinks_xla_buffers():
    default, memory = _schedule_probe("default"), _schedule_probe("memory")
    assert memory["applied"] is True
    # The reference config's step: 4,710 vs 6,804 MiB (benchmarks/jax_remat.py).
    assert memory["temp"] < 0.9 * default["temp"], (memory, default)


def test_schedule_flag_is_added_once_and_a_chosen_scheduler_stands(monkeypatch):
    monkeypatch.setattr(host_memory, "_jax_has_computed", lambda: False)
    monkeypatch.setattr(host_memory, "_jaxlib_knows_the_flag", lambda: True)
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    assert host_memory.use_memory_optimized_xla_schedule() is True
    assert os.environ["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 {host_memory.XLA_MEMORY_SCHEDULE_FLAG}"
    assert host_memory.use_memory_optimized_xla_schedule() is False  # already there
    assert os.environ["XLA_FLAGS"].count("xla_cpu_enable_concurrency_optimized_scheduler") == 1
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_CONCURRENCY_OPTIMIZED")
    assert host_memory.use_memory_optimized_xla_schedule() is False
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_CONCURRENCY_OPTIMIZED"


def test_schedule_flag_is_not_set_on_an_unchecked_jaxlib_or_too_late(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.setattr(host_memory, "_jaxlib_knows_the_flag", lambda: False)  # XLA would stop on an unknown flag
    assert host_memory.use_memory_optimized_xla_schedule() is False
    assert "XLA_FLAGS" not in os.environ
    monkeypatch.setattr(host_memory, "_jaxlib_knows_the_flag", lambda: True)
    monkeypatch.setattr(host_memory, "_jax_has_computed", lambda: True)
    with pytest.warns(UserWarning, match="before the first JAX computation"):
        assert host_memory.use_memory_optimized_xla_schedule() is False
    assert host_memory.use_memory_optimized_xla_schedule(warn=False) is False
    assert "XLA_FLAGS" not in os.environ


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_command_line_asks_for_the_schedule_on_jax_only(backend, monkeypatch, capsys):
    from keras_openseg import cli

    calls = []
    monkeypatch.setattr(cli, "_backend", lambda: backend)
    monkeypatch.setattr(cli, "use_memory_optimized_xla_schedule", lambda warn=True: calls.append(warn) or True)
    argv = ["segment", "--preset", "no-such-preset", "--queries", "cat", "no-such-image.png"]
    assert cli.main(argv) == 2
    capsys.readouterr()
    assert calls == ([False] if backend == "jax" else [])
