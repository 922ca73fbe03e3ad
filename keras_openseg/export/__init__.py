"""Export an OpenSeg model for serving without Python or Keras: SavedModel, ONNX, LiteRT, torch.

The exported graph is an `OpenSegInference`: raw images and text embeddings in, the open-vocabulary
segmentation of sec. 3.4 (eq. 6) out, like the official OpenSeg release's SavedModel. Text is embedded
outside the graph, with the text encoder the model was trained with (`OpenSegModel.text_embeddings`, or
`model.text_embedder.embed`), so any vocabulary works with one artifact.

Inputs (one dict):
    images: `[B, H, W, 3]` raw pixels 0..255, float32 (or uint8 with `image_dtype="uint8"`). H and W are
        free (any size) unless an `image_size` fixes them; the graph pads them to a multiple of 32.
    text_embeddings: `[C, E]` one embedding per category (any norm), E the model's embedding size.

Outputs (a dict):
    labels: `[B, H, W]` int32. Index of the winning category at each pixel.
    scores: `[B, H, W]` float32. Its eq. (6) logit.
    masks: `[B, N, ceil(H/4), ceil(W/4)]` float32. The N mask proposals (sigmoid probabilities) on the
        stride-4 grid.
    region_embeddings: `[B, N, E]` float32. One embedding z per proposal (unnormalized).
    pixel_embeddings: `[B, ceil(H/4), ceil(W/4), E]` float32. The per-pixel embeddings F_z.
    pixel_features: `[B, ceil(H/4), ceil(W/4), E]` float32. The region-pooled pixel feature
        sum_n s_n z^_n / sum_n s_n (the official release's per-pixel feature; `OpenSegModel.pixel_features`).

Which backend exports which format (Keras' own exporters do the work):

| format        | tensorflow                  | jax                          | torch                            |
|---------------|-----------------------------|------------------------------|----------------------------------|
| `saved_model` | yes, any image size         | yes (jax2tf), any image size | `torch_xla`, fixed size; untested|
| `onnx`        | needs `tf2onnx`; any size   | no (see below)               | no (see below)                   |
| `litert`      | yes; fixed size             | no (Keras has no exporter)   | `litert-torch`, fixed size; untested |
| `torch`       | no                          | no                           | yes (`.pt2`); fixed size         |

"fixed size" marks exporters that trace fixed shapes (LiteRT's builtin ops, `torch.export`): they need an
`image_size`. The batch size and the number of categories stay free everywhere. Checked against the Keras
model (tests/export): SavedModel on tensorflow and jax, LiteRT on tensorflow, `.pt2` on torch, and ONNX on
tensorflow (with tf2onnx, onnx and onnxruntime installed). Export ONNX from the tensorflow backend (a preset
loads on any backend): from jax, jax2onnx 0.17 patches `jnp.arange` into a version that rejects the
`stop=None` Keras passes; from torch, Keras uses the TorchScript exporter for a free batch size, and it lacks
`aten::ravel` (used by `keras.ops.take` on torch).

Example:

```python
model = keras_openseg.OpenSegModel.from_preset("path/to/preset")
export_model(model, "openseg_saved_model")
served = tf.saved_model.load("openseg_saved_model")
text, _ = model.text_embeddings(["cat", "grass"])          # [C, 1, E]
out = served.serve({"images": images, "text_embeddings": text[:, 0]})
out["labels"]                                              # [B, H, W]
```

Command line: `keras-openseg export --preset P --format saved_model --output DIR [--image-size S]`.
`--format google-savedmodel` writes the signature of Google's OpenSeg release instead
(`serving_default(inp_image_bytes, inp_text_emb)`; `keras_openseg.google_release`).

Modules: `openseg_inference` (`OpenSegInference`, `export_model`, `check_format`, `export_info`), `formats`
(the format names, no Keras), `cli` (`keras-openseg export`). Names are imported on first use, so the command
line's `--help` loads no backend.
"""

from keras_openseg.export.formats import FILE_NAMES
from keras_openseg.export.formats import FORMATS
from keras_openseg.export.formats import GOOGLE_RELEASE_FORMAT
from keras_openseg.export.formats import IMAGE_DTYPES
from keras_openseg.lazy_imports import lazy_attributes

_INFERENCE = "keras_openseg.export.openseg_inference"
__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "OpenSegInference": _INFERENCE,
        "check_format": _INFERENCE,
        "export_info": _INFERENCE,
        "export_model": _INFERENCE,
        "image_normalizer": _INFERENCE,
        "add_arguments": "keras_openseg.export.cli",
        "run": "keras_openseg.export.cli",
    },
    submodules=("cli", "formats", "openseg_inference"),
)

__all__ = [
    "FILE_NAMES",
    "FORMATS",
    "GOOGLE_RELEASE_FORMAT",
    "IMAGE_DTYPES",
    "OpenSegInference",
    "check_format",
    "export_info",
    "export_model",
    "image_normalizer",
]
