"""Host memory of a training process: large freed tensor buffers go back to the system at once
(`fix_mmap_threshold`), and JAX's programs compiled to keep fewer buffers alive (`use_memory_optimized_xla_schedule`).

glibc's `malloc` serves a block from its own `mmap` only above a threshold, and it raises that threshold (up to
32 MiB on 64-bit Linux) to the size of each such block the program frees. After a few training steps, tensor
buffers of up to 32 MiB therefore come from the heap, where freed ones stay mapped and fragment it: the process's
resident memory grows beyond what the backend ever holds at once. Fixing the threshold (`mallopt`) turns the
raising off, so every block over it is mapped on allocation and unmapped when freed.

It trades speed for memory: each large buffer is then mapped and zeroed afresh. Measured on the reference
config (ResNet-50, 512 px, N=128, batch 4, float32, `benchmarks/throughput.py --malloc fixed,glibc`, see
benchmarks/README.md), the training step's process peak over its imports and its images/s, fixed vs glibc's own:
PyTorch 6,166 vs 7,762 MiB at 0.81x the speed; TensorFlow 7,191 vs 7,130 MiB, 0.99x; JAX 8,170 vs 8,295 MiB,
0.83x. So it is off by default: `keras-openseg COMMAND --low-host-memory` or `fix_mmap_threshold()` turns it on
(PyTorch on a host short of memory); `MALLOC_MMAP_THRESHOLD_` in the environment, glibc's own variable, does the
same from the process's start.
"""

import ctypes
import os

# mallopt's parameter number for the mmap threshold (glibc's malloc.h).
M_MMAP_THRESHOLD = -3
# glibc's initial threshold: blocks of 128 KiB and more are mapped on their own.
DEFAULT_MMAP_THRESHOLD = 128 * 1024
ENVIRONMENT_VARIABLE = "MALLOC_MMAP_THRESHOLD_"


def _glibc():
    """This process's C library when it is glibc (the `malloc` the process uses), else None."""
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded: no library search
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
    except (OSError, TypeError, AttributeError):  # not glibc (musl, macOS), or no process handle (Windows)
        return None
    return libc


def fix_mmap_threshold(threshold=DEFAULT_MMAP_THRESHOLD):
    """Fixes glibc's mmap threshold for this process, so freed tensor buffers leave the resident set.

    Args:
        threshold: int. Blocks of at least this many bytes are mapped on allocation and unmapped when freed.
            Defaults to 128 KiB (glibc's own starting value, which it would otherwise raise as the program runs).

    Returns:
        True when the threshold was set; False where the C library is not glibc or the environment's
        `MALLOC_MMAP_THRESHOLD_` already chose one.

    Example: call `fix_mmap_threshold()` once, before the model is built (what `--low-host-memory` does). Where
    glibc's own variable is set, it decides:

    >>> import os
    >>> from keras_openseg.training.host_memory import fix_mmap_threshold
    >>> os.environ["MALLOC_MMAP_THRESHOLD_"] = "131072"
    >>> fix_mmap_threshold()
    False
    >>> del os.environ["MALLOC_MMAP_THRESHOLD_"]
    """
    if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold <= 0:
        raise ValueError(f"`threshold` must be a positive number of bytes. Received: threshold={threshold!r}")
    if os.environ.get(ENVIRONMENT_VARIABLE):
        return False
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))


# XLA:CPU's default scheduler orders a program's operations for concurrency and keeps more buffers alive at once
# than its memory-minimizing list scheduler, which this flag selects.
XLA_MEMORY_SCHEDULE_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
_XLA_SCHEDULER_FLAGS = ("xla_cpu_enable_concurrency_optimized_scheduler", "xla_cpu_scheduler_type")


def use_memory_optimized_xla_schedule(warn=True):
    """Makes XLA:CPU (JAX on a CPU) order each compiled program to keep fewer buffers alive at once.

    XLA reads its flags (`XLA_FLAGS`) once, at the process's first JAX computation, so call this before it
    (importing Keras or this package computes nothing). Measured on the reference training step (ResNet-50,
    512 px, N=128, batch 4, float32; `benchmarks/throughput.py --xla-schedule memory`, benchmarks/README.md): XLA's
    buffer assignment 4,710 MiB instead of 6,804, the process's peak 7,115 MiB instead of 9,067 (within 8 GiB), at
    the same speed (a small model's step: 0.93x), and the same losses after three steps, bit for bit: it orders
    the operations, not what they compute. XLA's GPU and TPU compilers do not read it.

    Args:
        warn: bool. Whether to warn when it comes too late (JAX has computed). Defaults to `True`.

    Returns:
        True when `XLA_FLAGS` now asks for the memory-optimized schedule; False where it already chose an
        XLA:CPU scheduler (the caller's choice stands), where jaxlib is not a version the flag was checked on
        (0.10: XLA stops a process whose `XLA_FLAGS` names a flag it does not know) or where JAX has already
        computed (too late: a warning says so).

    Example: call `use_memory_optimized_xla_schedule()` first thing in a script that trains on JAX on a CPU
    (`keras-openseg` does it for every command). Where `XLA_FLAGS` chooses a scheduler itself, that choice stands:

    >>> import os
    >>> from keras_openseg.training.host_memory import use_memory_optimized_xla_schedule
    >>> saved = os.environ.pop("XLA_FLAGS", None)
    >>> os.environ["XLA_FLAGS"] = "--xla_cpu_enable_concurrency_optimized_scheduler=true"
    >>> use_memory_optimized_xla_schedule()
    False
    >>> os.environ["XLA_FLAGS"]
    '--xla_cpu_enable_concurrency_optimized_scheduler=true'
    >>> del os.environ["XLA_FLAGS"]
    >>> if saved is not None:
    ...     os.environ["XLA_FLAGS"] = saved
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if any(name in flags for name in _XLA_SCHEDULER_FLAGS) or not _jaxlib_knows_the_flag():
        return False
    if _jax_has_computed():
        if not warn:
            return False
        import warnings

        warnings.warn(
            "use_memory_optimized_xla_schedule(): JAX has already computed in this process, so XLA has read its "
            "flags; call it before the first JAX computation, or set "
            f"XLA_FLAGS={XLA_MEMORY_SCHEDULE_FLAG} in the environment.",
            stacklevel=2,
        )
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {XLA_MEMORY_SCHEDULE_FLAG}".strip()
    return True


def _jaxlib_knows_the_flag():
    """Whether the installed jaxlib is one this flag was checked on: XLA stops the process on a flag it does not
    know, so other versions are left alone (the flag exists in jaxlib 0.10; set `XLA_FLAGS` yourself there)."""
    try:
        from importlib.metadata import version

        major, minor = (int(part) for part in version("jaxlib").split(".")[:2])
    except Exception:  # not installed, or an unusual version string
        return False
    return (major, minor) == (0, 10)


def _jax_has_computed():
    """Whether JAX's backends exist in this process (XLA has then read `XLA_FLAGS`)."""
    import sys

    bridge = sys.modules.get("jax._src.xla_bridge")  # not imported: nothing computed
    initialized = getattr(bridge, "backends_are_initialized", None)
    return bool(initialized and initialized())
