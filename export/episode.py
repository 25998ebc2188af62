"""One greedy episode of a trained agent as a `tf.Module`: the SavedModel and the full TFLite model.

`EpisodeModule` wraps a `GlimpseAgent` and turns raw uint8 images into the
outputs a serving user wants:

    images             uint8   [B, I, I, C]  pixel values 0..255 (the canvas; C = 1 or 3)
    -> probabilities      float32 [B, C]     class probabilities after the last glimpse
       class_ids          int32   [B]        argmax of `probabilities`
       locations          float32 [B, T, 2]  normalised patch centres (x, y) in [0, 1]
       action_ids         int32   [B, T]     grid cells looked at (row-major, see ActionGrid)
       step_probabilities float32 [B, T, C]  class probabilities after every glimpse

The policy is greedy (argmax), so the outputs are a deterministic function of the image.

The SavedModel is written by `keras.export.ExportArchive` (`export.saved_model.save`),
which tracks the agent's Keras 3 variables itself; `export.saved_model.verify` checks
the reloaded model anyway.  The TFLite converter only needs the module to keep the
agent, and with it its variables, alive.
"""

from __future__ import annotations

import tensorflow as tf

from tf_glimpse.model.agent import GlimpseAgent

OUTPUT_NAMES = ("probabilities", "class_ids", "locations", "action_ids", "step_probabilities")


# The serving signature's input: any shape, checked by `EpisodeModule.checked_episode`.
SERVING_SPEC = tf.TensorSpec(None, tf.uint8, name="images")


def images_spec(img_size: int, channels: int = 1, batch: int | None = None) -> tf.TensorSpec:
    """The input every exported episode takes: uint8 [batch, I, I, C] named "images"."""
    return tf.TensorSpec([batch, img_size, img_size, channels], tf.uint8, name="images")


class EpisodeModule(tf.Module):
    """A `tf.Module` around a trained agent: uint8 images -> greedy episode outputs."""

    def __init__(self, agent: GlimpseAgent, name: str = "glimpse_episode"):
        super().__init__(name=name)
        self.agent = agent
        self.img_size = agent.grid.img_size
        self.channels = agent.config.channels

    def episode(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        """The greedy episode of uint8 images [B, I, I, C] (no input checks)."""
        pixels = tf.cast(images, tf.float32) / 255.0
        outputs = self.agent(pixels, mode="greedy")
        step_probabilities = tf.nn.softmax(outputs["step_logits"], axis=-1)
        probabilities = step_probabilities[:, -1]
        return {
            "probabilities": probabilities,
            "class_ids": tf.argmax(probabilities, axis=-1, output_type=tf.int32),
            "locations": outputs["locations"],
            "action_ids": tf.cast(outputs["actions"], tf.int32),
            "step_probabilities": step_probabilities,
        }

    def checked_episode(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        """`serving_default`: uint8 images [B, I, I, C], any batch size, checked at entry.

        The signature (`SERVING_SPEC`) takes a uint8 tensor of any shape and checks it
        itself, so a wrong rank, image size or channel count fails with "images must be
        uint8 [batch, I, I, C]" and the shape it got.  (A shaped signature fails with
        an error that names an internal tensor, not `images`, on some machines.)  A
        wrong dtype fails at the signature: "expected to be a uint8 tensor".
        """
        size, channels = self.img_size, self.channels
        expected = f"images must be uint8 [batch, {size}, {size}, {channels}]"
        # Two checks that are each defined for any rank, so neither depends on running
        # after the other (grappler may run a graph's asserts in any order): the shape is
        # padded to 4 entries for the size check, which passes whenever the rank is wrong.
        shape = tf.shape(images)
        rank_ok = tf.equal(tf.size(shape), 4)
        padded = tf.concat([shape, tf.zeros([4], tf.int32)], axis=0)[:4]
        size_ok = tf.reduce_all(tf.equal(padded[1:], tf.constant([size, size, channels])))
        checks = [tf.debugging.Assert(rank_ok, [f"{expected}; got rank", tf.size(shape)]),
                  tf.debugging.Assert(tf.logical_or(tf.logical_not(rank_ok), size_ok),
                                      [f"{expected}; got [batch, height, width, channels] =",
                                       shape], summarize=4)]
        with tf.control_dependencies(checks):
            images = tf.identity(images)
        return self.episode(tf.ensure_shape(images, [None, size, size, channels]))

    def single_image_function(self) -> tf.types.experimental.ConcreteFunction:
        """One image [1, I, I, C] uint8 -> the same outputs: the graph of glimpse_full.tflite."""
        return tf.function(self.episode).get_concrete_function(
            images_spec(self.img_size, self.channels, batch=1))
