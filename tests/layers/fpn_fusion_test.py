import keras
import numpy as np
import pytest
from keras_hub.src.tests import test_case as keras_hub_test_case
from keras_hub.src.tests.test_case import TestCase

from keras_openseg.layers import FPNFusion


def pyramid(image_size, channels=3, batch_size=2, levels=(2, 3, 4, 5)):
    """Random features with the sizes a stride-2**l backbone with "same" padding gives (ceil division)."""
    rng = np.random.default_rng(0)
    return {
        f"P{level}": rng.normal(
            size=(batch_size, -(-image_size // 2**level), -(-image_size // 2**level), channels)
        ).astype("float32")
        for level in levels
    }


class FPNFusionTest(TestCase):
    @pytest.fixture(autouse=True)
    def _monkeypatch(self, monkeypatch):
        self.monkeypatch = monkeypatch

    def test_layer_behaviors(self):
        # run_layer_test passes a dict as one argument only to feature-pyramid layers; FPNFusion is one.
        FeaturePyramid = keras_hub_test_case.FeaturePyramid
        self.monkeypatch.setattr(keras_hub_test_case, "FeaturePyramid", (FeaturePyramid, FPNFusion))
        self.run_layer_test(
            cls=FPNFusion,
            init_kwargs={"filters": 4, "levels": ("P2", "P3")},
            input_data={k: keras.ops.convert_to_tensor(v) for k, v in pyramid(16, levels=(2, 3)).items()},
            expected_output_shape=(2, 4, 4, 4),
            # A lateral and an output convolution (kernel + bias) per level.
            expected_num_trainable_weights=8,
        )

    def test_odd_sizes_and_extra_levels(self):
        features = pyramid(36, levels=(1, 2, 3))  # P2 9x9, P3 5x5 (twice 5 overshoots 9); P1 ignored
        output = FPNFusion(filters=4, levels=("P3", "P2"))(features)
        self.assertEqual(tuple(output.shape), (2, 9, 9, 4))

    def test_single_level_is_two_convolutions(self):
        layer = FPNFusion(filters=4, levels=("P3",))
        features = pyramid(32, levels=(3,))
        output = keras.ops.convert_to_numpy(layer(features))
        expected = layer.output_convs["P3"](layer.lateral_convs["P3"](features["P3"]))
        self.assertAllClose(output, keras.ops.convert_to_numpy(expected), atol=1e-5, rtol=1e-5)

    def test_missing_level(self):
        with self.assertRaisesRegex(ValueError, "P5"):
            FPNFusion(filters=4)(pyramid(32, levels=(2, 3, 4)))

    def test_bad_level_name(self):
        with self.assertRaisesRegex(ValueError, "levels"):
            FPNFusion(filters=4, levels=("stage2",))
