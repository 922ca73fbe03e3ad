"""Host memory of a training process: large freed tensor buffers go back to the system at once.

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
