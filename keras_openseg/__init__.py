"""keras_openseg: OpenSeg open-vocabulary segmentation for Keras 3 (TensorFlow, JAX, PyTorch)."""

__version__ = "0.1.0"
