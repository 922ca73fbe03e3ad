"""The export formats by name (no Keras import: the command line's parser reads them)."""

FORMATS = ("saved_model", "onnx", "litert", "torch")  # Keras' exporters (`export_model`)
GOOGLE_RELEASE_FORMAT = "google-savedmodel"  # keras_openseg.google_release: serving_default(inp_image_bytes, ...)
IMAGE_DTYPES = ("float32", "uint8")
FILE_NAMES = {"onnx": "model.onnx", "litert": "model.tflite", "torch": "model.pt2"}  # inside --output
