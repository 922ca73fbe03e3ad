"""`keras-openseg build-dataset`: prepare one of keras_openseg's tfds datasets, e.g. from a manual download.

`tfds build` needs apache-beam (tfds 4.9.10); none of these builders does, so this calls
`builder.download_and_prepare` directly. Before tfds writes anything it checks the manual dir against the
builder's `required_manual_paths()`, so an incomplete download is reported as
`missing annotations/panoptic_val2017.json in DIR` rather than as a traceback from inside tfds.

    keras-openseg build-dataset coco_panoptic_captions --manual-dir ~/data/coco
    keras-openseg build-dataset localized_narratives --config coco --manual-dir ~/data/ln --data-dir /tfds
    keras-openseg build-dataset openseg_shapes
"""

import tensorflow_datasets as tfds
from etils import epath

from keras_openseg.datasets.ade20k import ADE20K
from keras_openseg.datasets.coco_panoptic_captions import CocoPanopticCaptions
from keras_openseg.datasets.localized_narratives import LocalizedNarratives
from keras_openseg.datasets.manual_download import check_manual_dir
from keras_openseg.datasets.openseg_shapes import OpenSegShapes
from keras_openseg.datasets.pascal_context import PascalContext
from keras_openseg.datasets.pascal_voc import PascalVOC

# tfds name -> builder class, for every dataset of the package (re-exported by `keras_openseg.datasets`).
BUILDERS = {
    builder.name: builder
    for builder in (ADE20K, CocoPanopticCaptions, LocalizedNarratives, OpenSegShapes, PascalContext, PascalVOC)
}


def build_dataset(name, manual_dir=None, data_dir=None, config=None):
    """Prepares a keras_openseg tfds dataset (generates its files) and returns its builder.

    Works for every builder of `keras_openseg.datasets.BUILDERS`; it shows tfds's progress bar while the
    examples are written and does nothing when the dataset is already prepared in `data_dir`.

    Args:
        name: str. The dataset, e.g. `"coco_panoptic_captions"`, optionally with its config
            (`"localized_narratives/coco"`).
        manual_dir: path-like or None. The folder holding the manual download, laid out as the dataset's
            README.md says. Not needed by `openseg_shapes`. Defaults to tfds's `<data_dir>/downloads/manual`.
        data_dir: path-like or None. Where tfds writes and later reads the dataset. Defaults to tfds's
            default (`$TFDS_DATA_DIR` or `~/tensorflow_datasets`).
        config: str or None. The builder config (`"2017"`, `"coco"`, `"150"`, ...). Defaults to the config
            given in `name`, else the builder's default config.

    Returns:
        tfds.core.DatasetBuilder. The prepared builder: `builder.as_dataset(split="train")`,
        `builder.info.metadata`.

    Raises:
        ValueError: `name` or `config` is not one of the package's datasets or configs.
        keras_openseg.datasets.ManualDirError: the manual dir lacks a file or holds a damaged one; the message
            names it.

    Example:
    ```python
    from keras_openseg.datasets import build_dataset

    builder = build_dataset("openseg_shapes", data_dir="/tmp/tfds")
    ds = builder.as_dataset(split="train")
    ```
    """
    builder_cls, config = _resolve(name, config)
    data_dir = None if data_dir is None else epath.Path(data_dir).expanduser()
    builder = builder_cls(data_dir=data_dir, config=config)
    download_config = tfds.download.DownloadConfig()
    if builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
        manual_dir = epath.Path(manual_dir or builder.data_dir_root / "downloads" / "manual").expanduser()
        download_config = tfds.download.DownloadConfig(manual_dir=manual_dir)
        prepared = (builder.data_path / "dataset_info.json").exists()  # is_prepared() warns when absent
        if not prepared and hasattr(builder, "check_manual_dir"):  # builders whose splits come one at a time
            builder.check_manual_dir(manual_dir)
        elif not prepared and hasattr(builder, "required_manual_paths"):
            check_manual_dir(manual_dir, builder.required_manual_paths(), builder.info.full_name)
    builder.download_and_prepare(download_config=download_config)
    return builder


def _resolve(name, config):
    """Returns (builder class, config name or None) for `name` ("name" or "name/config") and `config`."""
    name, _, name_config = str(name).partition("/")
    if name not in BUILDERS:
        raise ValueError(f"name: expected one of {', '.join(sorted(BUILDERS))}, got {name!r}.")
    if name_config and config and name_config != config:
        raise ValueError(f"config: {config!r} contradicts the config {name_config!r} given in name.")
    config = config or name_config or None
    configs = list(BUILDERS[name].builder_configs)
    if config is not None and config not in configs:
        raise ValueError(f"config: {name} has configs {', '.join(configs)}; got {config!r}.")
    return BUILDERS[name], config


def add_arguments(parser):
    """Adds the `build-dataset` arguments to an `argparse` parser."""
    parser.add_argument("name", help=f"dataset to build: {', '.join(sorted(BUILDERS))}; NAME/CONFIG also works")
    parser.add_argument(
        "--manual-dir",
        help="folder with the manual download, laid out as the dataset's README.md says (not needed for "
        "openseg_shapes); defaults to <data-dir>/downloads/manual",
    )
    parser.add_argument(
        "--data-dir", help="where tfds writes the dataset; defaults to $TFDS_DATA_DIR or ~/tensorflow_datasets"
    )
    parser.add_argument(
        "--config", help="builder config, e.g. 2017 (coco_panoptic_captions), coco (localized_narratives)"
    )


def run(args):
    """Runs `keras-openseg build-dataset`; returns 0.

    A bad name or config (`ValueError`) and an incomplete or damaged manual dir (`ManualDirError`, a
    `ValueError`) are raised to `keras_openseg.cli`, which prints them as one `keras-openseg: error:` line and
    exits 2.
    """
    tfds.display_progress_bar(True)
    _resolve(args.name, args.config)  # before tfds starts: a wrong name is a message, not a tfds error
    builder = build_dataset(args.name, manual_dir=args.manual_dir, data_dir=args.data_dir, config=args.config)
    info = builder.info
    splits = ", ".join(f"{split} {info.splits[split].num_examples}" for split in info.splits)
    print(f"{info.full_name} ready in {builder.data_dir} ({splits} examples).")
    for split, reason in (info.metadata or {}).get("incomplete_splits", {}).items():
        print(f"  {split}: not built, {reason}")
    for split, report in (info.metadata or {}).get("data_report", {}).items():
        print(f"  {split}: {report}")
    print(
        f'Load it with: import keras_openseg.datasets; tfds.load("{info.full_name.rsplit("/", 1)[0]}", '
        f'data_dir="{builder.data_dir_root}")'
    )
    return 0
