"""Tests of the manual-dir readers shared by the builders (`keras_openseg.datasets._manual_dir`)."""

import io

import numpy as np
import pytest
from PIL import Image

from keras_openseg.datasets import _manual_dir

pytestmark = pytest.mark.backend_independent


def _encoded(fmt, **kwargs):
    buffer = io.BytesIO()
    Image.fromarray(np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)).save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_complete_images_pass_and_truncated_ones_are_named(tmp_path, fmt):
    data = _encoded(fmt)
    (tmp_path / "ok").write_bytes(data)
    (tmp_path / "padded").write_bytes(data + b"\x00" * 16)  # trailing padding is not damage
    (tmp_path / "cut").write_bytes(data[: len(data) // 2])
    assert _manual_dir.read_image_bytes(tmp_path, "ok") == data
    assert _manual_dir.read_image_bytes(tmp_path, "padded").startswith(data)
    with pytest.raises(_manual_dir.ManualDirError, match=f"cut in {tmp_path} is not a readable image"):
        _manual_dir.read_image_bytes(tmp_path, "cut")
    with pytest.raises(_manual_dir.ManualDirError, match=f"missing absent.jpg in {tmp_path}"):
        _manual_dir.read_image_bytes(tmp_path, "absent.jpg")


def test_decode_image_keeps_the_file_mode(tmp_path):
    palette = Image.fromarray(np.array([[0, 1], [2, 255]], dtype=np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [255, 255, 255] * 253)
    palette.save(tmp_path / "labels.png")
    np.testing.assert_array_equal(_manual_dir.decode_image(tmp_path, "labels.png"), [[0, 1], [2, 255]])


def test_check_manual_dir_lists_every_missing_path_and_accepts_globs(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations/a-00000-of-00001.jsonl").write_text("")
    _manual_dir.check_manual_dir(tmp_path, ["annotations", "annotations/a*.jsonl"], "x/y")
    with pytest.raises(_manual_dir.ManualDirError, match=f"x/y: missing b.json, images/\\*.jpg in {tmp_path}"):
        _manual_dir.check_manual_dir(tmp_path, ["annotations", "b.json", "images/*.jpg"], "x/y")
    with pytest.raises(_manual_dir.ManualDirError, match="does not exist"):
        _manual_dir.check_manual_dir(tmp_path / "nope", [], "x/y")


def test_sharded_files_need_every_shard(tmp_path):
    for shard in (0, 2):
        (tmp_path / f"n-{shard:05d}-of-00003.jsonl").write_text("")
    with pytest.raises(_manual_dir.ManualDirError, match="incomplete shards"):
        _manual_dir.sharded_files(tmp_path, "n*.jsonl")
    (tmp_path / "n-00001-of-00003.jsonl").write_text("")
    assert _manual_dir.sharded_files(tmp_path, "n*.jsonl") == [f"n-{i:05d}-of-00003.jsonl" for i in range(3)]
    (tmp_path / "single.jsonl").write_text("")
    assert _manual_dir.sharded_files(tmp_path, "single*.jsonl") == ["single.jsonl"]


def test_json_readers_name_a_truncated_file(tmp_path):
    (tmp_path / "a.json").write_text('{"images": [1, 2')
    with pytest.raises(_manual_dir.ManualDirError, match="a.json in .* is not valid JSON"):
        _manual_dir.read_json(tmp_path, "a.json")
    (tmp_path / "b.jsonl").write_text('{"caption": "x"}\n\n{"caption": ')
    with pytest.raises(_manual_dir.ManualDirError, match="b.jsonl in .*: line 3 is not valid JSON"):
        list(_manual_dir.read_jsonl(tmp_path, "b.jsonl"))
