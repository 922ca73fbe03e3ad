"""Padding masks through the layers: padded keys, padded pooling cells and the position layout, against numpy."""

import keras
import numpy as np
from keras import ops
from keras_hub.src.tests.test_case import TestCase
from position_embedding_test import numpy_bilinear

from keras_openseg.layers import FeatureHead
from keras_openseg.layers import FPNFusion
from keras_openseg.layers import LearnedPositionEmbedding
from keras_openseg.layers import MaskCrossAttentionBlock
from keras_openseg.layers import MaskPooling
from keras_openseg.layers import MaskQueryDecoder
from keras_openseg.layers import mask_cross_attention
from keras_openseg.layers.padding import PaddingFill
from keras_openseg.layers.padding import PaddingGrid
from keras_openseg.layers.padding import extent_grid
from keras_openseg.layers.padding import padding_grid


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def canvas_mask(batch, height, width, sizes):
    """`[B, height, width]` float32: 1 on the top-left `sizes[b]` pixels."""
    mask = np.zeros((batch, height, width), "float32")
    for index, (rows, columns) in enumerate(sizes):
        mask[index, :rows, :columns] = 1.0
    return mask


class PaddingGridTest(TestCase):
    def test_ceil_semantics_against_numpy(self):
        mask = canvas_mask(2, 32, 64, [(17, 33), (32, 64)])
        grid = numpy(padding_grid(mask, 4))
        expected = np.zeros((2, 8, 16), "float32")
        expected[0, : -(-17 // 4), : -(-33 // 4)] = 1.0
        expected[1] = 1.0
        self.assertAllEqual(grid, expected)
        self.assertAllEqual(numpy(PaddingGrid(stride=8)(mask)), numpy(padding_grid(mask, 8)))
        self.assertAllEqual(numpy(extent_grid(np.array([17, 32]), np.array([33, 64]), (32, 64), (8, 16))), expected)
        self.assertIsNone(padding_grid(None, 4))

    def test_fill(self):
        valid = canvas_mask(1, 4, 4, [(3, 2)])
        features = np.random.default_rng(0).normal(size=(1, 4, 4, 5)).astype("float32")
        filled = numpy(PaddingFill(fill=-7.0)(features, valid))
        self.assertAllClose(filled, np.where(valid[..., None] > 0, features, -7.0))
        masks = np.moveaxis(features, -1, 1)
        filled = numpy(PaddingFill(channels_axis=1)(masks, valid))
        self.assertAllClose(filled, np.where(valid[:, None] > 0, masks, 0.0))
        self.assertAllClose(numpy(PaddingFill()(features)), features)


class PaddedAttentionTest(TestCase):
    def _check_padded_keys_get_no_weight(self, height, width, valid_size):
        rng = np.random.default_rng(1)
        block = MaskCrossAttentionBlock(hidden_dim=8, num_heads=2, mlp_dim=16)
        queries = rng.normal(size=(1, 3, 8)).astype("float32")
        features = rng.normal(size=(1, height, width, 8)).astype("float32")
        valid = canvas_mask(1, height, width, [valid_size])
        padded = numpy(block(queries, features, key_valid=valid))
        # The same block on the valid keys alone: the padded ones must get exactly zero weight.
        alone = numpy(block(queries, features[:, : valid_size[0], : valid_size[1]]))
        self.assertAllClose(padded, alone, atol=1e-5, rtol=1e-5)
        unmasked = numpy(block(queries, features))
        self.assertGreater(np.abs(unmasked - alone).max(), 1e-3)  # the padding does matter without the mask

    def test_padded_keys_get_no_weight(self):
        self._check_padded_keys_get_no_weight(6, 8, (3, 5))

    def test_padded_keys_get_no_weight_blockwise(self):
        # More keys than one block: the online-softmax path on JAX and TensorFlow, the fused kernel on torch.
        self.assertGreater(48 * 64, mask_cross_attention._KEY_BLOCK_SIZE)
        self._check_padded_keys_get_no_weight(48, 64, (45, 37))

    def test_blockwise_equals_keras_path_with_a_mask(self):
        rng = np.random.default_rng(2)
        layer = mask_cross_attention.BlockwiseKeyAttention(2, 4)
        reference = keras.layers.MultiHeadAttention(2, 4)
        queries = rng.normal(size=(2, 3, 8)).astype("float32")
        keys = rng.normal(size=(2, 3000, 8)).astype("float32")
        mask = np.ones((2, 1, 3000), bool)
        mask[0, :, 1000:] = False
        mask[1, :, 2500:] = False
        layer(queries, keys)
        reference(queries, keys)
        reference.set_weights(layer.get_weights())
        self.assertAllClose(
            numpy(layer(queries, keys, attention_mask=mask)),
            numpy(reference(queries, keys, attention_mask=np.broadcast_to(mask, (2, 3, 3000)))),
            atol=1e-5,
            rtol=1e-5,
        )

    def test_decoder_masks_padded_cells(self):
        rng = np.random.default_rng(3)
        decoder = MaskQueryDecoder(num_queries=4, num_layers=2, num_heads=2)
        features = rng.normal(size=(1, 8, 8, 16)).astype("float32")
        queries, _ = decoder(features, pixel_valid=canvas_mask(1, 8, 8, [(5, 3)]))
        alone, _ = decoder(features[:, :5, :3])
        self.assertAllClose(numpy(queries), numpy(alone), atol=1e-5, rtol=1e-5)


class PaddedPoolingTest(TestCase):
    def test_pooling_ignores_padded_cells(self):
        rng = np.random.default_rng(4)
        masks = rng.uniform(size=(2, 3, 6, 7)).astype("float32")
        features = rng.normal(size=(2, 6, 7, 5)).astype("float32")
        valid = canvas_mask(2, 6, 7, [(4, 3), (6, 7)])
        pooled = numpy(MaskPooling()(masks, features, pixel_valid=valid))
        expected = np.einsum("bnhw,bhw,bhwd->bnd", masks, valid, features)
        self.assertAllClose(pooled, expected, atol=1e-5, rtol=1e-5)
        # Anything on the padded cells leaves the result unchanged.
        noisy = np.where(valid[..., None] > 0, features, 1e3)
        self.assertAllClose(numpy(MaskPooling()(masks, noisy, pixel_valid=valid)), expected, atol=1e-4, rtol=1e-5)


class PositionLayoutTest(TestCase):
    def setUp(self):
        self.layer = LearnedPositionEmbedding(grid=(6, 5), initializer="random_normal")
        self.layer.build((None, None, None, 4))
        self.table = numpy(self.layer.position_table)

    def test_canvas_equal_to_the_grid_is_the_table_exactly(self):
        out = numpy(self.layer(np.zeros((2, 6, 5, 4), "float32")))
        self.assertAllEqual(out, np.broadcast_to(self.table, out.shape))
        out = numpy(self.layer(np.zeros((2, 6, 5, 4), "float32"), pixel_valid=np.ones((2, 6, 5), "float32")))
        self.assertAllEqual(out, np.broadcast_to(self.table, out.shape))

    def test_images_that_fit_take_the_top_left_cells_whatever_the_canvas(self):
        # An image of 4 x 3 cells, alone on a 4 x 3 canvas, on the table-sized canvas and on a larger one.
        for canvas in [(4, 3), (6, 5), (9, 8)]:
            valid = canvas_mask(1, *canvas, [(4, 3)])
            out = numpy(self.layer(np.zeros((1,) + canvas + (4,), "float32"), pixel_valid=valid))
            self.assertAllClose(out[0, :4, :3], self.table[:4, :3], atol=1e-6, rtol=0)
            self.assertTrue(np.all(out[0][valid[0] == 0] == 0.0))

    def test_larger_images_stretch_the_table_over_their_own_region(self):
        # Rows: 9 > 6 are stretched over the image's 9 rows; columns: 4 <= 5 take the table's first 4.
        valid = canvas_mask(2, 12, 8, [(9, 4), (3, 8)])
        out = numpy(self.layer(np.zeros((2, 12, 8, 4), "float32"), pixel_valid=valid))
        stretched_rows = numpy_bilinear(self.table, (9, 5))[:, :4]
        self.assertAllClose(out[0, :9, :4], stretched_rows, atol=1e-5, rtol=1e-5)
        stretched_columns = numpy_bilinear(self.table, (6, 8))[:3]
        self.assertAllClose(out[1, :3, :8], stretched_columns, atol=1e-5, rtol=1e-5)
        # Without a mask a larger canvas is one image: the table stretched over all of it, as before.
        out = numpy(self.layer(np.zeros((1, 12, 8, 4), "float32")))
        self.assertAllClose(out[0], numpy_bilinear(self.table, (12, 8)), atol=1e-5, rtol=1e-5)


class PaddedFeatureTest(TestCase):
    def test_heads_and_fusion_do_not_depend_on_the_canvas(self):
        rng = np.random.default_rng(5)
        head = FeatureHead(filters=6, num_convs=2, output_dim=3)
        fusion = FPNFusion(filters=6, levels=("P2", "P3"))
        image = {"P2": rng.normal(size=(5, 7, 4)), "P3": rng.normal(size=(3, 4, 4))}

        def run(rows, columns):
            pyramid = {}
            for level, stride in (("P2", 4), ("P3", 8)):
                canvas = np.full((1, rows // stride, columns // stride, 4), 9.0, "float32")  # garbage padding
                h, w = image[level].shape[:2]
                canvas[0, :h, :w] = image[level]
                pyramid[level] = canvas
            padding_mask = canvas_mask(1, rows, columns, [(20, 28)])  # 5 x 7 cells at P2, 3 x 4 at P3
            fused = fusion(pyramid, padding_mask=padding_mask)
            valid = padding_grid(padding_mask, 4)
            return numpy(fused)[0, :5, :7], numpy(head(fused, pixel_valid=valid))[0, :5, :7]

        small, large = run(32, 32), run(64, 96)
        self.assertAllClose(small[0], large[0], atol=1e-5, rtol=1e-5)
        self.assertAllClose(small[1], large[1], atol=1e-5, rtol=1e-5)
