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
