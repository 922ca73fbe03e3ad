"""The former private home of the manual-dir readers; `keras_openseg.datasets.manual_download` is the public one.

Kept so that `from keras_openseg.datasets._manual_dir import ManualDirError` (and the readers) still work.
"""

from keras_openseg.datasets.manual_download import ManualDirError  # noqa: F401
from keras_openseg.datasets.manual_download import check_manual_dir  # noqa: F401
from keras_openseg.datasets.manual_download import complete_splits  # noqa: F401
from keras_openseg.datasets.manual_download import decode_image  # noqa: F401
from keras_openseg.datasets.manual_download import read_image_bytes  # noqa: F401
from keras_openseg.datasets.manual_download import read_json  # noqa: F401
from keras_openseg.datasets.manual_download import read_jsonl  # noqa: F401
from keras_openseg.datasets.manual_download import sharded_files  # noqa: F401
