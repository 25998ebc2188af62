"""The action grid and the glimpse sensor (both backends)."""

import numpy as np
import pytest
import tensorflow as tf

from tf_glimpse.config import ConfigError, GlimpseConfig
from tf_glimpse.model.grid import ActionGrid
from tf_glimpse.model.sensor import GlimpseSensor

SETTINGS = [  # (img_size, patch_size, stride, scales)
    (28, 3, 1, 3), (28, 8, 4, 2), (64, 8, 4, 3), (60, 12, 4, 3), (100, 12, 4, 4), (28, 3, 3, 2),
]


def corner_and_edge_actions(grid: ActionGrid) -> np.ndarray:
    n = grid.size
    return np.array([0, n - 1, n * (n - 1), n * n - 1, n // 2, n * (n // 2), n * n // 2])


def test_grid_size_and_round_trip():
    grid = ActionGrid(64, 8, 4)
    assert grid.size == 15 and grid.num_actions == 225
    actions = np.arange(grid.num_actions)
    row, col = grid.to_row_col(actions)
    np.testing.assert_array_equal(grid.to_action(row, col), actions)
    np.testing.assert_array_equal(grid.from_centre(grid.centres(actions)), actions)
    centres = grid.centres()
    assert centres.min() > 0 and centres.max() < 1
    np.testing.assert_allclose(centres[0], [4 / 64, 4 / 64])
    np.testing.assert_allclose(centres[grid.to_action(2, 5)], [(20 + 4) / 64, (8 + 4) / 64])


def test_tiles_cover_the_image_when_stride_equals_patch():
    grid = ActionGrid(28, 3, 3)  # 25 is not divisible by 3: 10 centred tiles of 3 cover 30 px.
    assert grid.tiles and grid.size == 10 and grid.origin == -1
    tops = grid.top_left(np.arange(grid.size))[1]
    assert tops[0] == -1 and tops[-1] + 3 == 29
    assert grid.centres().min() > 0 and grid.centres().max() < 1


@pytest.mark.parametrize("img, patch, stride", [(64, 9, 4), (28, 3, 2), (28, 30, 1), (28, 3, 0)])
def test_bad_sizes_are_rejected_with_the_valid_strides(img, patch, stride):
    with pytest.raises(ConfigError) as error:
        ActionGrid(img, patch, stride)
    message = str(error.value)
    assert "valid" in message
    with pytest.raises(ConfigError):
        GlimpseConfig(img_size=img, patch_size=patch, stride=stride)


def test_stride_error_names_the_valid_strides():
    with pytest.raises(ConfigError, match=r"stride=4.*valid strides: \[1, 5, 9, 11, 55\]"):
        GlimpseConfig(img_size=64, patch_size=9, stride=4)


@pytest.mark.parametrize("backend", ["matmul", "crop_and_resize", "window"])
def test_scale_one_glimpse_is_the_numpy_slice(backend):
    img, patch, stride = 28, 5, 1
    images = np.random.default_rng(0).random((4, img, img, 1)).astype(np.float32)
    grid = ActionGrid(img, patch, stride)
    actions = corner_and_edge_actions(grid)[:4]
    glimpses = GlimpseSensor(img, patch, stride, 1, backend=backend)(images, actions).numpy()
    for b, action in enumerate(actions):
        r, c = grid.to_row_col(action)
        expected = images[b, r * stride:r * stride + patch, c * stride:c * stride + patch, 0]
        if backend in ("matmul", "window"):
            np.testing.assert_array_equal(glimpses[b, 0, ..., 0], expected)
        else:
            np.testing.assert_allclose(glimpses[b, 0, ..., 0], expected, atol=1e-5)


@pytest.mark.parametrize("img, patch, stride, scales", SETTINGS)
def test_backends_agree_at_every_scale_corner_and_edge(img, patch, stride, scales):
    grid = ActionGrid(img, patch, stride)
    actions = corner_and_edge_actions(grid)
    images = np.random.default_rng(1).random((len(actions), img, img, 1)).astype(np.float32)
    fast = GlimpseSensor(img, patch, stride, scales, backend="matmul")(images, actions).numpy()
    reference = GlimpseSensor(img, patch, stride, scales,
                              backend="crop_and_resize")(images, actions).numpy()
    assert fast.shape == (len(actions), scales, patch, patch, 1)
    np.testing.assert_allclose(fast, reference, atol=1e-5)
    window = GlimpseSensor(img, patch, stride, scales, backend="window")(images, actions).numpy()
    np.testing.assert_allclose(window, reference, atol=1e-5)


@pytest.mark.parametrize("img, patch, stride, scales, channels",
                         [(*setting, 1) for setting in SETTINGS] + [(64, 8, 4, 3, 3)])
def test_window_backend_reads_one_image_as_it_reads_a_batch(img, patch, stride, scales,
                                                            channels):
    """One image (the TFLite episode) takes the one-window path: the same glimpses."""
    grid = ActionGrid(img, patch, stride)
    actions = corner_and_edge_actions(grid)
    images = np.random.default_rng(5).random((len(actions), img, img, channels))
    images = images.astype(np.float32)
    sensor = GlimpseSensor(img, patch, stride, scales, backend="window")
    batch = sensor(images, actions).numpy()
    reference = GlimpseSensor(img, patch, stride, scales,
                              backend="crop_and_resize")(images, actions).numpy()
    np.testing.assert_allclose(batch, reference, atol=1e-5)
    for index, action in enumerate(actions):
        single = sensor(images[index:index + 1], np.array([action])).numpy()
        np.testing.assert_allclose(single[0], batch[index], atol=1e-6)
    compiled = tf.function(sensor, jit_compile=True)(images[:1], actions[:1]).numpy()
    np.testing.assert_allclose(compiled[0], batch[0], atol=1e-6)


@pytest.mark.parametrize("img, patch, stride, scales", SETTINGS[:3])
def test_colour_glimpses_are_each_channels_grayscale_glimpse(img, patch, stride, scales):
    """C = 3: every backend reads each channel as it reads a grayscale image, and they agree."""
    grid = ActionGrid(img, patch, stride)
    actions = corner_and_edge_actions(grid)
    images = np.random.default_rng(4).random((len(actions), img, img, 3)).astype(np.float32)
    reference = GlimpseSensor(img, patch, stride, scales,
                              backend="crop_and_resize")(images, actions).numpy()
    assert reference.shape == (len(actions), scales, patch, patch, 3)
    for backend in ("matmul", "window"):
        sensor = GlimpseSensor(img, patch, stride, scales, backend=backend)
        colour = sensor(images, actions).numpy()
        np.testing.assert_allclose(colour, reference, atol=1e-5)
        for channel in range(3):
            gray = sensor(images[..., channel:channel + 1], actions).numpy()[..., 0]
            np.testing.assert_allclose(colour[..., channel], gray, atol=1e-6)


@pytest.mark.parametrize("backend, channels", [("matmul", 1), ("window", 1), ("matmul", 3),
                                               ("window", 3)])
def test_sensor_compiles_with_xla_and_converts_to_tflite_builtins(backend, channels):
    from export.tflite import flex_ops

    sensor = GlimpseSensor(28, 5, 1, 3, backend=backend)
    images = np.random.default_rng(2).random((3, 28, 28, channels)).astype(np.float32)
    actions = np.array([0, 100, 575], np.int32)
    compiled = tf.function(sensor, jit_compile=True)(images, actions).numpy()
    np.testing.assert_allclose(compiled, sensor(images, actions).numpy(), atol=1e-6)
    function = tf.function(lambda x, a: sensor(x, a)).get_concrete_function(
        tf.TensorSpec([1, 28, 28, channels], tf.float32), tf.TensorSpec([1], tf.int32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    assert flex_ops(converter.convert()) == []


def test_second_scale_is_the_2x2_mean_and_outside_reads_zero():
    img, patch, stride = 8, 2, 2
    images = np.arange(64, dtype=np.float32).reshape(1, 8, 8, 1) + 1.0
    grid = ActionGrid(img, patch, stride)
    action = grid.to_action(1, 1)  # Patch [2:4, 2:4]; scale 1 covers [1:5, 1:5].
    glimpse = GlimpseSensor(img, patch, stride, 2)(images, np.array([action])).numpy()[0, 1, ..., 0]
    window = images[0, 1:5, 1:5, 0]
    expected = window.reshape(2, 2, 2, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(glimpse, expected, rtol=1e-6)
    corner = GlimpseSensor(img, patch, stride, 2)(images, np.array([0])).numpy()[0, 1, ..., 0]
    padded = np.pad(images[0, :, :, 0], 1)[0:4, 0:4]  # Scale 1 of the corner covers [-1:3].
    np.testing.assert_allclose(corner, padded.reshape(2, 2, 2, 2).mean(axis=(1, 3)), rtol=1e-6)
    assert np.isclose(corner[0, 0], images[0, 0, 0, 0] / 4)


def test_sensor_get_config_round_trip():
    layer = GlimpseSensor(64, 8, 4, 3, backend="crop_and_resize")
    clone = GlimpseSensor.from_config(layer.get_config())
    assert (clone.grid, clone.scales, clone.backend) == (layer.grid, 3, "crop_and_resize")


def test_coarser_scales_average_whole_blocks_instead_of_skipping_pixels():
    img, patch, stride = 16, 2, 2
    images = np.random.default_rng(3).random((1, img, img, 1)).astype(np.float32)
    grid = ActionGrid(img, patch, stride)
    action = grid.to_action(3, 4)  # Patch [6:8, 8:10]; scale 2 covers [3:11, 5:13].
    glimpse = GlimpseSensor(img, patch, stride, 3)(images, np.array([action])).numpy()[0, 2, ..., 0]
    window = images[0, 3:11, 5:13, 0]
    np.testing.assert_allclose(glimpse, window.reshape(2, 4, 2, 4).mean(axis=(1, 3)), rtol=1e-5)
    # Every pixel of the window counts: the weights of each output sum to one.
    table = GlimpseSensor(img, patch, stride, 3)._table.numpy()
    np.testing.assert_allclose(table[3, 2].sum(axis=-1), 1.0, rtol=1e-6)
