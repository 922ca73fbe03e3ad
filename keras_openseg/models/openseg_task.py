import keras
from keras_hub.models import Task

from keras_openseg.models.image_batching import ImageCanvas
from keras_openseg.models.image_batching import as_image_list
from keras_openseg.models.openseg_backbone import OpenSegBackbone
from keras_openseg.models.openseg_preprocessor import OpenSegPreprocessor
from keras_openseg.models.preset_loading import OpenSegPresetMixin


def training_optimizer(learning_rate=0.005, decay_steps=None, weight_decay=1e-5, momentum=0.9):
    """The paper's training recipe: SGD with momentum 0.9, cosine learning-rate decay from 0.005, weight decay
    1e-5 (sec. 4.1 gives the learning rate, its cosine schedule and the weight decay; momentum SGD is the
    optimizer of the TensorFlow detection / segmentation code base the paper builds on).

    The learnable temperature is left out of the weight decay, which would pull log(tau) towards 0.

    Args:
        learning_rate: float. Initial learning rate. Defaults to `0.005`.
        decay_steps: int or None. Length of the cosine decay; None keeps the rate constant. Defaults to
            `None`.
        weight_decay: float. Decoupled weight decay. Defaults to `1e-5`.
        momentum: float. SGD momentum. Defaults to `0.9`.
    """
    if decay_steps is not None:
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps)
    optimizer = keras.optimizers.SGD(learning_rate, momentum=momentum, weight_decay=weight_decay)
    optimizer.exclude_from_weight_decay(var_names=["log_temperature"])
    return optimizer


def images_of(inputs):
    """The images of a model input: the `images` entry of a training dict, or the input itself."""
    if isinstance(inputs, dict):
        if "images" not in inputs:
            raise ValueError(f"Model inputs given as a dict must hold `images`. Received keys {sorted(inputs)}.")
        return inputs["images"]
    return inputs


def check_labels(y, task_name):
    """Raise a ValueError unless `y` is the label dict `{"masks", "mask_valid"}`."""
    if not isinstance(y, dict) or "masks" not in y:
        received = sorted(y) if isinstance(y, dict) else type(y).__name__
        raise ValueError(f"{task_name} trains on y = {{'masks', 'mask_valid'}}. Received y: {received}.")


class OpenSegTask(OpenSegPresetMixin, Task):
    """What `OpenSegModel` and `OpenSegTeacher` share: an `OpenSegBackbone` graph over the images, the paper's
    optimizer, preset loading with clear errors, and batched inference on raw images of any size.

    The functional graph takes the images alone: `call` picks them out of a training dict
    (`{"images", ...}`), whose other entries only `compute_loss` reads.
    """

    backbone_cls = OpenSegBackbone
    preprocessor_cls = OpenSegPreprocessor

    def __init__(self, backbone, preprocessor=None, **kwargs):
        if not isinstance(backbone, OpenSegBackbone):
            raise ValueError(f"`backbone` must be an `OpenSegBackbone`. Received: {type(backbone).__name__}")
        # === Layers ===
        # Set before the functional init, which takes the backbone's dtype policy (mixed_float16 then gets
        # a loss-scaling optimizer from the default `compile`).
        self.backbone = backbone
        self.preprocessor = preprocessor

        # === Functional Model ===
        images = backbone.input
        outputs = backbone(images)
        super().__init__(inputs=images, outputs=outputs, **kwargs)

    def call(self, inputs, training=None, mask=None):
        return super().call(images_of(inputs), training=training, mask=mask)

    def compute_output_spec(self, inputs, training=None, mask=None):
        return super().compute_output_spec(images_of(inputs))

    def compile(self, optimizer="auto", loss=None, metrics=None, *, learning_rate=0.005, decay_steps=None, **kwargs):
        """Configure training; the loss is always the task's own (`compute_loss`).

        Args:
            optimizer: `"auto"` or a keras optimizer. `"auto"` is the paper's recipe (`training_optimizer`):
                SGD with momentum 0.9, learning rate `learning_rate` with cosine decay over `decay_steps`
                steps (constant when None), weight decay 1e-5 (not on the temperature). Defaults to
                `"auto"`.
            loss: must stay None. Defaults to `None`.
            metrics: extra keras metrics, or None. The loss terms are always reported. Defaults to `None`.
            learning_rate: float. Initial learning rate of the `"auto"` optimizer. Defaults to `0.005`.
            decay_steps: int or None. Cosine-decay length of the `"auto"` optimizer. Defaults to `None`.
            **kwargs: `keras.Model.compile` arguments (`jit_compile`, `steps_per_execution`, ...).
        """
        if loss is not None:
            raise ValueError(f"{type(self).__name__} computes its own loss; leave `loss=None`.")
        if optimizer == "auto":
            optimizer = training_optimizer(learning_rate, decay_steps)
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)

    def compile_from_config(self, config):
        # keras skips restoring the compile state of models that override `compile`; this one takes the
        # standard arguments, so restore it as keras does for plain models.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built and getattr(self, "optimizer", None) is not None:
            self.optimizer.build(self.trainable_variables)

    # === Presets: weights without the optimizer's state ===
    # keras_hub writes task.weights.h5 with Keras' weight saving, which also walks `model.optimizer`: a preset
    # saved after training carried the momentum buffers (as large as the head) and warned "Skipping variable
    # loading for optimizer" when loaded into a freshly compiled model. Training checkpoints keep the
    # optimizer (they use `save_weights`, see `keras_openseg.training`).

    def _preset_objects_to_skip(self):
        skip = list(self.backbone._flatten_layers())
        if getattr(self, "optimizer", None) is not None:
            skip.append(self.optimizer)
        return skip

    def save_task_weights(self, filepath):
        if not str(filepath).endswith(".weights.h5"):
            raise ValueError(f"The filename must end in `.weights.h5`. Received: filepath={filepath}")
        keras.saving.save_weights(self, filepath=filepath, objects_to_skip=self._preset_objects_to_skip())

    def load_task_weights(self, filepath):
        if not str(filepath).endswith(".weights.h5"):
            raise ValueError(f"The filename must end in `.weights.h5`. Received: filepath={filepath}")
        keras.saving.load_weights(self, filepath, objects_to_skip=self._preset_objects_to_skip())

    def _add_regularization(self, loss):
        if self.losses:
            loss = loss + keras.ops.cast(keras.ops.sum(self.losses), "float32")
        return loss

    def _run_backbone(self, images, batch_size):
        """Backbone outputs for raw `images` in chunks of `batch_size`.

        Returns whether the images came as one stacked array, and an iterator of `(ImageCanvas, outputs)`
        pairs, one chunk in memory at a time.
        """
        image_list, stacked = as_image_list(images)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive int. Received: batch_size={batch_size!r}")
        image_converter = getattr(self.preprocessor, "image_converter", None)

        def chunks():
            for start in range(0, len(image_list), batch_size):
                canvas = ImageCanvas(image_list[start : start + batch_size], image_converter)
                # `predict_on_batch` runs the compiled (jit) forward pass; an eager call dispatches op by op.
                yield canvas, self.backbone.predict_on_batch(canvas.canvas)

        return stacked, chunks()
