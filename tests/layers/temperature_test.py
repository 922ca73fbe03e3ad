import keras
import numpy as np
from keras_hub.src.tests.test_case import TestCase

from keras_openseg.layers import Temperature


class TemperatureModel(keras.Model):
    """Predicts the temperature for every example, so a regression loss drives it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.temperature = Temperature(0.07)

    def call(self, x):
        return keras.ops.zeros_like(x) + self.temperature(x)


class TemperatureTest(TestCase):
    def test_layer_behaviors(self):
        # A scalar output fits neither the batched training step nor the compute-dtype check of
        # run_layer_test; both are tested below.
        self.run_layer_test(
            cls=Temperature,
            init_kwargs={"initial_value": 0.1},
            input_data=keras.random.normal((2, 3)),
            expected_output_shape=(),
            expected_num_trainable_weights=1,
            run_training_check=False,
            run_precision_checks=False,
        )

    def test_value_and_float32_under_mixed_precision(self):
        for policy in ("float32", "mixed_bfloat16", "mixed_float16", "bfloat16"):
            layer = Temperature(0.07, dtype=policy)
            value = layer(keras.ops.ones((2, 3), dtype=layer.compute_dtype))
            self.assertDTypeEqual(value, "float32")
            self.assertDTypeEqual(layer.log_temperature, "float32")
            self.assertAllClose(value, 0.07)
        self.assertAllClose(Temperature(0.5)(), 0.5)  # callable without inputs

    def test_stays_positive_under_training(self):
        model = TemperatureModel()
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss="mae")
        x = np.ones((4, 1), "float32")
        model.fit(x, np.full((4, 1), -10.0, "float32"), epochs=3, batch_size=4, verbose=0)
        value = float(keras.ops.convert_to_numpy(model.temperature()))
        self.assertTrue(0.0 < value < 0.07)  # pushed down but still positive
        model.fit(x, np.full((4, 1), 1.0, "float32"), epochs=3, batch_size=4, verbose=0)
        self.assertGreater(float(keras.ops.convert_to_numpy(model.temperature())), value)

    def test_min_value(self):
        layer = Temperature(0.07, min_value=0.01)
        layer.log_temperature.assign(np.log(1e-4))
        self.assertAllClose(layer(), 0.01)

    def test_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "initial_value"):
            Temperature(0.0)
        with self.assertRaisesRegex(ValueError, "min_value"):
            Temperature(0.07, min_value=0.1)
