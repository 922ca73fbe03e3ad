"""`keras-openseg` command line: one sub-command per user task.

Each sub-command lives beside the code it drives: the module named in `COMMANDS` defines
`add_arguments(parser)` and `run(args) -> int`, and imports Keras (with TensorFlow, JAX or PyTorch) only inside
`run`. So `keras-openseg --help` and `keras-openseg COMMAND --help` are fast, and the backend (`KERAS_BACKEND`) is
chosen before Keras loads.

Bad input -- a missing or unreadable file, a missing preset, empty queries, a missing dataset or manual dir --
raises `ValueError` or `OSError` where it is found; `main` prints it as one line `keras-openseg: error: ...` on
stderr and exits with status 2. `keras-openseg --debug COMMAND ...` lets the exception propagate, traceback
included. `--low-host-memory` (every command) fixes glibc's mmap threshold (`training/host_memory.py`): freed
tensor buffers go back to the system instead of fragmenting the heap, less memory at some speed. On JAX every
command compiles with XLA:CPU's memory-optimized schedule (`use_memory_optimized_xla_schedule`: the reference
training step within 8 GiB); an `XLA_FLAGS` that chooses a scheduler itself is left as it is.
"""

import argparse
import importlib
import sys

from keras_openseg.training.host_memory import fix_mmap_threshold
from keras_openseg.training.host_memory import use_memory_optimized_xla_schedule

# command -> (module, one-line help)
COMMANDS = {
    "demo": ("keras_openseg.demo", "train, evaluate and visualize OpenSeg on openseg_shapes (no download)"),
    "train": ("keras_openseg.training.cli", "train an OpenSeg model or teacher with model.fit"),
    "pseudo-label": ("keras_openseg.training.pseudo_label", "write teacher masks for caption-only data"),
    "evaluate": ("keras_openseg.evaluation.cli", "mIoU / Grounding mIoU / proposal recall on a dataset"),
    "segment": ("keras_openseg.segment_cli", "segment images with free-text queries, write overlays"),
    "export": ("keras_openseg.export", "export a preset (SavedModel, ONNX, LiteRT, torch, Google release signature)"),
    "build-dataset": ("keras_openseg.datasets.build", "prepare a tfds dataset from a manual download"),
}
# What bad input raises; anything else is a bug and keeps its traceback.
USAGE_ERRORS = (ValueError, OSError)
# An error message longer than this is cut to its first line (tfds lists every dataset it knows).
_MAX_MESSAGE = 600
_DEBUG_HELP = "on an error, show the traceback instead of one line"
_LOW_HOST_MEMORY_HELP = (
    "fix glibc's mmap threshold: freed tensor buffers leave the process instead of fragmenting its heap (the "
    "PyTorch float32 reference training step: 21%% less memory, 19%% slower; benchmarks/README.md)"
)


def build_parser():
    """The top-level parser: the global flags and one entry per command (their own flags are not loaded)."""
    parser = argparse.ArgumentParser(prog="keras-openseg", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def build_command_parser(name):
    """The parser of one command: its module's `add_arguments`, plus `--debug` and `--low-host-memory`.

    Returns `(parser, module)`.
    """
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"keras-openseg {name}", description=help_text)
    module.add_arguments(parser)
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    parser.add_argument("--low-host-memory", action="store_true", help=_LOW_HOST_MEMORY_HELP)
    return parser, module


def _backend():
    """Keras' backend, which the command's `run` is about to load (importing Keras computes nothing)."""
    import keras

    return keras.backend.backend()


def error_line(error):
    """The one-line message `main` prints for a usage error."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    message = " ".join(lines)
    if len(message) > _MAX_MESSAGE:
        message = f"{lines[0]} (--debug shows the whole message)"
    return f"keras-openseg: error: {message or type(error).__name__}"


def main(argv=None):
    """Runs `keras-openseg ARGV`; returns the exit status (0 ok, 2 bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = False
    while argv and argv[0] == "--debug":
        debug, argv = True, argv[1:]
    if not argv or argv[0] not in COMMANDS:
        parser = build_parser()
        if argv and argv[0] not in ("-h", "--help"):
            parser.error(f"unknown command {argv[0]!r}; choose one of: {', '.join(COMMANDS)}")
        parser.print_help()
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    parser, module = build_command_parser(name)
    args = parser.parse_args(rest)
    debug = debug or args.debug
    if args.low_host_memory and not fix_mmap_threshold():
        print("keras-openseg: --low-host-memory: not glibc, or MALLOC_MMAP_THRESHOLD_ decides", file=sys.stderr)
    if _backend() == "jax":
        # Before the command computes anything; where the caller's process has (cli.main called from Python), XLA
        # has read its flags already and this changes nothing.
        use_memory_optimized_xla_schedule(warn=False)
    try:
        return int(module.run(args) or 0)
    except USAGE_ERRORS as error:
        if debug:
            raise
        print(error_line(error), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
