"""Reading a manually downloaded dataset folder, with errors that name the file at fault.

Shared by the keras_openseg tfds builders that read a manual download (`coco_panoptic_captions`,
`localized_narratives`, `ade20k`, `pascal_context`, `pascal_voc`), and public for builders of your own.
(`keras_openseg.datasets._manual_dir`, its former private name, still imports.)

The protocol: such a builder defines `required_manual_paths(self) -> list[str]`, the files and folders its
current config needs, relative to the manual dir (an entry may be a glob pattern, which must match at least
one path). `keras_openseg.datasets.build.build_dataset` calls `check_manual_dir` with that list before tfds
starts, and the builder calls it again at the top of `_split_generators`, so a plain
`tfds.load(..., download_and_prepare_kwargs=...)` gets the same message. A builder whose splits may be
downloaded one at a time (`coco_panoptic_captions`) defines `check_manual_dir(self, manual_dir)` instead, which
`build_dataset` calls; it uses `complete_splits` to build the splits the manual dir holds.

Files that exist but are damaged (truncated JSON, PNG or JPEG: an interrupted download or unzip) raise
`ManualDirError` from the readers below, again naming the file and the manual dir, instead of an error from
deep inside tfds or TensorFlow.

All file access goes through `etils.epath`, like tfds itself, so manual dirs on GCS work too.
"""

import io
import json
import re

import numpy as np
from etils import epath
from PIL import Image

# A complete JPEG ends with the EOI marker, a complete PNG with its IEND chunk (then its CRC).
_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"
_PNG_START, _PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"
_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.")


class ManualDirError(ValueError):
    """A manual download directory lacks a file or folder the builder needs, or holds a damaged one.

    The message names the dataset, the missing or damaged path (relative to the manual dir) and the manual
    dir itself; `keras-openseg build-dataset` prints it without a traceback.
    """


def check_manual_dir(manual_dir, required_paths, dataset):
    """Raises `ManualDirError` naming every entry of `required_paths` absent from `manual_dir`.

    Args:
        manual_dir: path-like. The manual download directory.
        required_paths: list of str. Paths relative to `manual_dir`; glob patterns must match at least once.
        dataset: str. The dataset (e.g. `"coco_panoptic_captions/2017"`) named in the message.
    """
    manual_dir = epath.Path(manual_dir)
    if not manual_dir.is_dir():
        raise ManualDirError(
            f"{dataset}: the manual dir {manual_dir} does not exist; download the files as its README says "
            "and pass that folder as --manual-dir (or `manual_dir=`)."
        )
    missing = [path for path in required_paths if not _matches(manual_dir, path)]
    if missing:
        raise ManualDirError(
            f"{dataset}: missing {', '.join(missing)} in {manual_dir}; see the README of "
            f"{dataset.split('/')[0]} for the expected layout."
        )


def complete_splits(manual_dir, paths_by_split, dataset):
    """Returns `(complete, incomplete)`: the splits whose paths all exist, and a message per incomplete split.

    A `ManualDirError` naming every split's missing paths when no split is complete.

    Args:
        manual_dir: path-like. The manual download directory.
        paths_by_split: dict `{split: list of str}`. The paths each split needs, relative to `manual_dir`
            (glob patterns must match at least once).
        dataset: str. The dataset named in the message.

    Returns:
        (list of str, dict `{split: "missing ... in <manual dir>"}`).
    """
    check_manual_dir(manual_dir, [], dataset)
    complete, incomplete = [], {}
    for split, paths in paths_by_split.items():
        missing = [path for path in paths if not _matches(epath.Path(manual_dir), path)]
        if missing:
            incomplete[split] = f"missing {', '.join(missing)} in {manual_dir}"
        else:
            complete.append(split)
    if not complete:
        raise ManualDirError(
            f"{dataset}: no split is complete: "
            + "; ".join(f"{split}: {message}" for split, message in incomplete.items())
            + f"; see the README of {dataset.split('/')[0]} for the expected layout."
        )
    return complete, incomplete


def read_json(manual_dir, relative_path):
    """Returns the parsed JSON file `manual_dir/relative_path`; missing or truncated: a `ManualDirError`."""
    text = _read(manual_dir, relative_path).decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ManualDirError(
            f"{relative_path} in {manual_dir} is not valid JSON ({error}); the file is probably truncated: "
            "download or extract it again."
        ) from None


def read_jsonl(manual_dir, relative_path):
    """Yields the records of the JSON-lines file `manual_dir/relative_path`, one parsed object per line."""
    path = epath.Path(manual_dir) / relative_path
    if not path.exists():
        raise ManualDirError(f"missing {relative_path} in {manual_dir}")
    with path.open("r") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as error:
                raise ManualDirError(
                    f"{relative_path} in {manual_dir}: line {number} is not valid JSON ({error}); the file is "
                    "probably truncated: download it again."
                ) from None


def read_image_bytes(manual_dir, relative_path):
    """Returns the encoded bytes of an image file after checking that the file is complete.

    A JPEG must end with its end-of-image marker and a PNG with its IEND chunk; a file that does not (or is
    another format) is decoded once with Pillow, which accepts trailing padding but rejects truncated data.
    The check reads no pixels for well-formed files, so it costs little on the 100k-image datasets.

    Args:
        manual_dir: path-like. The manual download directory.
        relative_path: str. The image file, relative to `manual_dir`.

    Returns:
        bytes. The file's content, unchanged (tfds stores it as is).
    """
    data = _read(manual_dir, relative_path)
    if data.startswith(_JPEG_START) and data.rstrip(b"\x00")[-2:] == _JPEG_END:
        return data
    if data.startswith(_PNG_START) and data[-8:] == _PNG_END:
        return data
    decode_image(manual_dir, relative_path, data)
    return data


def decode_image(manual_dir, relative_path, data=None):
    """Decodes an image file to a numpy array (`[H, W]` or `[H, W, C]`, the file's own mode).

    Args:
        manual_dir: path-like. The manual download directory.
        relative_path: str. The image file, relative to `manual_dir`.
        data: bytes or None. The file's content when already read. Defaults to reading the file.

    Returns:
        np.ndarray. The pixels; a damaged file is a `ManualDirError` naming it.
    """
    if data is None:
        data = _read(manual_dir, relative_path)
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return np.asarray(image)
    except (OSError, SyntaxError, ValueError) as error:  # Pillow's errors for truncated or unknown data
        raise ManualDirError(
            f"{relative_path} in {manual_dir} is not a readable image ({error}); the file is probably "
            "truncated: download or extract it again."
        ) from None


def sharded_files(manual_dir, pattern):
    """Returns the sorted relative paths matching `pattern`, checking that no `-NNNNN-of-MMMMM` shard is absent.

    Args:
        manual_dir: path-like. The manual download directory.
        pattern: str. A glob pattern relative to `manual_dir`, e.g.
            `"annotations/coco_train_localized_narratives*.jsonl"`.

    Returns:
        list of str. The matching files, relative to `manual_dir`; a `ManualDirError` when none match or
        when the shard names show that some are missing.
    """
    manual_dir = epath.Path(manual_dir)
    paths = sorted(str(path.relative_to(manual_dir)) for path in manual_dir.glob(pattern))
    if not paths:
        raise ManualDirError(f"missing {pattern} in {manual_dir}")
    shards = [_SHARD.search(path) for path in paths]
    if all(shards):
        totals = {int(shard.group(2)) for shard in shards}
        present = {int(shard.group(1)) for shard in shards}
        if len(totals) != 1 or present != set(range(totals.pop())):
            raise ManualDirError(
                f"incomplete shards for {pattern} in {manual_dir}: found {len(paths)} files "
                f"({', '.join(paths)}); download every shard."
            )
    return paths


def _matches(manual_dir, path):
    if any(char in path for char in "*?["):
        return any(True for _ in manual_dir.glob(path))
    return (manual_dir / path).exists()


def _read(manual_dir, relative_path):
    path = epath.Path(manual_dir) / relative_path
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ManualDirError(f"missing {relative_path} in {manual_dir}") from None
