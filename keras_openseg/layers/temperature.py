import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_openseg")
class Temperature(keras.layers.Layer):
    """Learnable softmax temperature tau of the grounding loss (OpenSeg eqs. 2-4).

    Stored as `log(tau)` in a float32 variable, so tau = exp(log tau) stays positive under any gradient step,
    and its relative changes are what the optimizer sees. The value is returned as a float32 scalar whatever
    the layer's compute dtype: the losses run in float32, and 0.07 is coarse in bfloat16.

    Args:
        initial_value: float. Starting temperature, > 0. Defaults to `0.07`.
        min_value: float or None. When set, the temperature is clipped from below at this value (CLIP clips
            its logit scale likewise) so it cannot run to 0. Defaults to `None`.
        **kwargs: base layer arguments (`name`, `dtype`, `trainable`, ...).

    Call arguments:
        inputs: ignored; any tensor (or nothing). Present so the layer can sit in a functional graph.

    Returns:
        A float32 scalar, the temperature tau.

    Example:

    >>> temperature = Temperature(0.07)
    >>> float(temperature())
    0.07...
    """

    def __init__(self, initial_value=0.07, min_value=None, **kwargs):
        super().__init__(**kwargs)
        if not initial_value > 0:
            raise ValueError(f"`initial_value` must be > 0. Received: initial_value={initial_value}")
        if min_value is not None and not 0 < min_value <= initial_value:
            raise ValueError(
                f"`min_value` must be in (0, initial_value={initial_value}]. Received: min_value={min_value}"
            )
        self.initial_value = initial_value
        self.min_value = min_value
        # The variable does not depend on any input shape, so it exists from construction on.
        self.log_temperature = self.add_weight(
            name="log_temperature",
            shape=(),
            initializer=keras.initializers.Constant(math.log(initial_value)),
            dtype="float32",
            autocast=False,
        )
        self.built = True

    def build(self, input_shape=None):
        self.built = True

    @property
    def temperature(self):
        """The current temperature as a float32 scalar tensor."""
        temperature = ops.exp(ops.convert_to_tensor(self.log_temperature, "float32"))
        if self.min_value is not None:
            temperature = ops.maximum(temperature, self.min_value)
        return temperature

    def call(self, inputs=None):
        return self.temperature

    def compute_output_shape(self, input_shape=None):
        return ()

    def compute_output_spec(self, inputs=None):
        return keras.KerasTensor((), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update({"initial_value": self.initial_value, "min_value": self.min_value})
        return config
