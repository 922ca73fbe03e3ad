"""Preparing a tfds dataset with progress output that reads well in a terminal and in a log file."""

import contextlib
import sys
import time


@contextlib.contextmanager
def tfds_progress_bars(stream=None):
    """Shows tfds' nested progress bars only when `stream` (default: stderr) is a terminal.

    tfds draws several tqdm bars at once and moves the cursor up between them (`ESC [A`); written to a file or
    a pipe (a CI log, `make demo > log`) that leaves lines of escape codes. Elsewhere the bars are off inside
    the block and restored after it.

    Args:
        stream: file-like or None. Where the bars would be drawn. Defaults to `sys.stderr`.

    Example:

    >>> import io
    >>> with tfds_progress_bars(io.StringIO()):
    ...     pass
    """
    from tensorflow_datasets.core.utils import tqdm_utils

    stream = sys.stderr if stream is None else stream
    interactive = bool(getattr(stream, "isatty", lambda: False)())
    previous = tqdm_utils._active
    tqdm_utils.display_progress_bar(previous and interactive)
    try:
        yield
    finally:
        tqdm_utils.display_progress_bar(previous)


def download_and_prepare(builder, **kwargs):
    """`builder.download_and_prepare(**kwargs)`, saying what it prepares and how long it took.

    A dataset already prepared is reused at once and nothing is printed; otherwise one line before and one
    after, and tfds' progress bars only on a terminal (`tfds_progress_bars`).

    Args:
        builder: a `tfds.core.DatasetBuilder`.
        **kwargs: passed to `download_and_prepare` (`download_config`, ...).

    Returns:
        `builder`.
    """
    if (builder.data_path / "dataset_info.json").exists():  # `is_prepared()` logs a warning when it is not
        return builder
    name = f"{builder.name}/{builder.builder_config.name}" if builder.builder_config else builder.name
    print(f"    preparing {name} in {builder.data_dir} ...", flush=True)
    start = time.time()
    with tfds_progress_bars():
        builder.download_and_prepare(**kwargs)
    print(f"    {name} prepared in {time.time() - start:.0f} s", flush=True)
    return builder
