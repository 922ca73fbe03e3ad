"""`keras-openseg` command line: one sub-command per user task.

Each sub-command lives beside the code it drives: the module named in `COMMANDS` defines
`add_arguments(parser)` and `run(args) -> int`. Modules are imported only when their command runs,
so `keras-openseg --help` stays fast and a backend is chosen (`KERAS_BACKEND`) before Keras loads.
"""

import argparse
import importlib
import sys

# command -> (module, one-line help)
COMMANDS = {
    "demo": ("keras_openseg.demo", "train, evaluate and visualize OpenSeg on openseg_shapes (no download)"),
    "train": ("keras_openseg.training.cli", "train an OpenSeg model or teacher with model.fit"),
    "pseudo-label": ("keras_openseg.training.pseudo_label", "write teacher masks for caption-only data"),
    "evaluate": ("keras_openseg.evaluation.cli", "mIoU / Grounding mIoU / proposal recall on a dataset"),
    "segment": ("keras_openseg.visualization", "segment images with free-text queries, write overlays"),
    "export": ("keras_openseg.export", "export a preset as SavedModel / ONNX / LiteRT"),
    "build-dataset": ("keras_openseg.datasets.build", "prepare a tfds dataset from a manual download"),
}


def build_parser():
    parser = argparse.ArgumentParser(prog="keras-openseg", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        parser = build_parser()
        if argv and argv[0] not in ("-h", "--help"):
            parser.error(f"unknown command {argv[0]!r}; choose one of: {', '.join(COMMANDS)}")
        parser.print_help()
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"keras-openseg {name}", description=help_text)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
