import contextlib

import keras
from keras_hub.models import Task
from keras_hub.src.utils.python_utils import classproperty

from keras_openseg.models.compilation import default_jit_compile
from keras_openseg.models.image_batching import ImageCanvas
from keras_openseg.models.image_batching import as_image_list
from keras_openseg.models.openseg_backbone import OpenSegBackbone
from keras_openseg.models.openseg_backbone import backbone_inputs
from keras_openseg.models.openseg_image_converter import OpenSegImageConverter
from keras_openseg.models.openseg_preprocessor import OpenSegPreprocessor
from keras_openseg.models.preset_loading import architecture_entry
from keras_openseg.models.preset_loading import load_checked_preset


def cosine_schedule(learning_rate, decay_steps, warmup_steps=0):
    """Linear warm-up from 0 to `learning_rate` over `warmup_steps`, then cosine decay to 0 over `decay_steps`.

    Args:
        learning_rate: float. The peak (initial, without warm-up) learning rate.
        decay_steps: int. Length of the cosine decay, after the warm-up.
        warmup_steps: int. Length of the linear warm-up. Defaults to `0`.
    """
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else learning_rate,
        decay_steps=decay_steps,
        warmup_target=learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def training_optimizer(
    learning_rate=0.005, decay_steps=None, weight_decay=1e-5, momentum=0.9, clip_norm=None, optimizer="sgd"
):
    """The paper's training recipe: SGD with momentum 0.9, cosine learning-rate decay from 0.005, weight decay
    1e-5 (sec. 4.1 gives the learning rate, its cosine schedule and the weight decay; momentum SGD is the
    optimizer of the TensorFlow detection / segmentation code base the paper builds on).

    The learnable temperature is left out of the weight decay, which would pull log(tau) towards 0. The one
    optimizer builder of the package: `compile()` and the training recipe (`keras_openseg.training`) use it.

    Args:
        learning_rate: float or a `keras.optimizers.schedules` schedule. Initial learning rate. Defaults to
            `0.005`.
        decay_steps: int or None. Length of a cosine decay of a float `learning_rate`; None keeps the rate
            (or the schedule) as given. Defaults to `None`.
        weight_decay: float. Decoupled weight decay; 0 for none. Defaults to `1e-5`.
        momentum: float. SGD momentum. Defaults to `0.9`.
        clip_norm: float or None. Global gradient-norm clipping. Defaults to `None`.
        optimizer: `"sgd"` (momentum SGD) or `"adamw"` (the same schedule, decay and clipping with Adam's
            update). Defaults to `"sgd"`.
    """
    if optimizer not in ("sgd", "adamw"):
        raise ValueError(f"`optimizer` must be 'sgd' or 'adamw'. Received: optimizer={optimizer!r}")
    if decay_steps is not None:
        learning_rate = cosine_schedule(learning_rate, decay_steps)
    common = {"learning_rate": learning_rate, "weight_decay": weight_decay or None, "global_clipnorm": clip_norm}
    if optimizer == "adamw":
        result = keras.optimizers.AdamW(**{**common, "weight_decay": float(weight_decay)})
    else:
        result = keras.optimizers.SGD(momentum=momentum, **common)
    if weight_decay:
        result.exclude_from_weight_decay(var_names=["log_temperature"])
    return result


def images_of(inputs):
    """The backbone inputs of a model input: `{"images", "padding_mask"}` of a training dict, or the images.

    A training dict's `padding_mask` (1 on image pixels) is passed on when it has one; without it every
    pixel is valid.
    """
    if isinstance(inputs, dict):
        if "images" not in inputs:
            raise ValueError(f"Model inputs given as a dict must hold `images`. Received keys {sorted(inputs)}.")
        return backbone_inputs(inputs)
    return inputs


@contextlib.contextmanager
def frozen_parts(*parts):
    """The given layers (None entries skipped) untrainable inside the context, as they were after it.

    For a `fit` whose loss does not reach some parts of the backbone (the teacher's L_S never reaches the region
    head; the per-pixel baseline never uses the mask shape embedding): frozen, they are not handed to the
    optimizer, which would otherwise warn "Gradients do not exist" and still decay their weights.
    """
    parts = [part for part in parts if part is not None]
    trainable = [part.trainable for part in parts]
    for part in parts:
        part.trainable = False
    try:
        yield
    finally:
        for part, was_trainable in zip(parts, trainable):
            part.trainable = was_trainable


def check_labels(y, task_name):
    """Raise a ValueError unless `y` is the label dict `{"masks", "mask_valid"}`."""
    if not isinstance(y, dict) or "masks" not in y:
        received = sorted(y) if isinstance(y, dict) else type(y).__name__
        raise ValueError(f"{task_name} trains on y = {{'masks', 'mask_valid'}}. Received y: {received}.")


class OpenSegTask(Task):
    """What `OpenSegModel` and `OpenSegTeacher` share: an `OpenSegBackbone` graph over the images, the paper's
    optimizer, preset loading with clear errors, and batched inference on raw images of any size.

    The functional graph takes the backbone's inputs: `call` picks the images and their optional
    `padding_mask` out of a training dict (`{"images", "padding_mask", ...}`), whose other entries only
    `compute_loss` reads.
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

    # === Presets ===

    @classproperty
    def architectures(cls):
        """Named untrained architectures (`openseg_presets.OPENSEG_ARCHITECTURES`): name -> metadata."""
        return cls.backbone_cls.architectures

    @classmethod
    def from_architecture(cls, name, load_weights=True, **backbone_kwargs):
        """Build a named architecture: its image encoder with a fresh OpenSeg head, and its image converter.

        Args:
            name: string. A key of `architectures`.
            load_weights: bool. Load the image encoder's pretrained weights. Defaults to `True`.
            **backbone_kwargs: `OpenSegBackbone` arguments overriding the architecture's (e.g.
                `num_queries=64`).
        """
        backbone = cls.backbone_cls.from_architecture(name, load_weights=load_weights, **backbone_kwargs)
        preprocessor = cls.preprocessor_cls(OpenSegImageConverter.from_architecture(name))
        return cls(backbone, preprocessor, **architecture_entry(name).get("task", {}))

    @classmethod
    def from_preset(cls, preset, load_weights=True, **kwargs):
        """Load a saved preset of this task, checked as `OpenSegBackbone.from_preset` checks one.

        A preset of another OpenSeg task (or a backbone saved with a preprocessor) loads its backbone and
        preprocessor into this task, with this task's default options. A preset saved under mixed precision
        (e.g. by `keras-openseg demo --precision bfloat16`) loads in the current global dtype policy, as
        keras_hub loads float presets; pass `dtype="mixed_bfloat16"` to compute in bfloat16 again.
        """
        return load_checked_preset(cls, super().from_preset, preset, load_weights, task_cls=cls, **kwargs)

    def __call__(self, inputs, *args, **kwargs):
        return super().__call__(backbone_inputs(images_of(inputs)), *args, **kwargs)

    def call(self, inputs, training=None, mask=None):
        return super().call(backbone_inputs(images_of(inputs)), training=training, mask=mask)

    def compute_output_spec(self, inputs, training=None, mask=None):
        return super().compute_output_spec(backbone_inputs(images_of(inputs)))

    def compile(
        self,
        optimizer="auto",
        loss=None,
        metrics=None,
        *,
        learning_rate=0.005,
        decay_steps=None,
        jit_compile="auto",
        **kwargs,
    ):
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
            jit_compile: bool or `"auto"`. Whether the train, test and predict steps are XLA-compiled.
                `"auto"` follows `default_jit_compile(self.dtype_policy)`, the choice measured fastest for this
                backend, device and dtype (on a CPU, TensorFlow runs oneDNN without XLA), and where that is XLA
                Keras' own `"auto"` (XLA when every layer supports it). Defaults to `"auto"`.
            **kwargs: `keras.Model.compile` arguments (`steps_per_execution`, `run_eagerly`, ...).
        """
        if loss is not None:
            raise ValueError(f"{type(self).__name__} computes its own loss; leave `loss=None`.")
        if optimizer == "auto":
            optimizer = training_optimizer(learning_rate, decay_steps)
        if jit_compile == "auto" and not default_jit_compile(self.dtype_policy):
            jit_compile = False  # where XLA is measured to help, Keras' "auto" still checks the layers support it
        super().compile(optimizer=optimizer, metrics=metrics, jit_compile=jit_compile, **kwargs)

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
                yield canvas, self.backbone.predict_on_batch(canvas.inputs)

        return stacked, chunks()
