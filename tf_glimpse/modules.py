"""The agent's building blocks, one Keras layer each.

* `GlimpseEncoder`  - "what" (the glimpse, every scale) and "where" (its location)
  -> embedding e_t.
* `StepClassifier` - causal multi-head attention + GRU over e_0..e_t -> class
  logits after every step.

The memory (an LSTM cell), the policy head and the baseline head are plain Keras
layers owned by `tf_glimpse.agent.GlimpseAgent`.
"""

from __future__ import annotations

import keras
import tensorflow as tf


class GlimpseEncoder(keras.layers.Layer):
    """Glimpses [B, k, P, P] and locations [B, 2] (x, y in [0, 1]) -> embeddings [B, D].

    As in RAM's glimpse network, the "what" and "where" pathways are embedded
    separately and combined: ``e = relu(W_what g + W_where l)``.
    `kind="mlp"` flattens the glimpse; `kind="cnn"` treats the k scales as channels of
    two 3x3 convolutions.
    """

    def __init__(self, kind: str = "mlp", glimpse_units: int = 128, location_units: int = 64,
                 embedding_units: int = 256, **kwargs):
        super().__init__(**kwargs)
        if kind not in ("mlp", "cnn"):
            raise ValueError(f"encoder kind={kind!r}; valid values: mlp, cnn")
        self.kind = kind
        self.glimpse_units = glimpse_units
        self.location_units = location_units
        self.embedding_units = embedding_units
        if kind == "cnn":
            self.features = [
                keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
                keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
                keras.layers.Flatten(),
            ]
        else:
            self.features = [keras.layers.Flatten()]
        self.what_hidden = keras.layers.Dense(glimpse_units, activation="relu")
        self.where_hidden = keras.layers.Dense(location_units, activation="relu")
        self.what_out = keras.layers.Dense(embedding_units)
        self.where_out = keras.layers.Dense(embedding_units, use_bias=False)

    def call(self, glimpses: tf.Tensor, locations: tf.Tensor) -> tf.Tensor:
        x = tf.transpose(glimpses, [0, 2, 3, 1]) if self.kind == "cnn" else glimpses
        for layer in self.features:
            x = layer(x)
        what = self.what_out(self.what_hidden(x))
        # Centre locations on 0 so the "where" pathway sees values in [-1, 1].
        where = self.where_out(self.where_hidden(2.0 * locations - 1.0))
        return tf.nn.relu(what + where)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(kind=self.kind, glimpse_units=self.glimpse_units,
                      location_units=self.location_units, embedding_units=self.embedding_units)
        return config


class StepClassifier(keras.layers.Layer):
    """Embeddings [B, T, D] -> class logits after every step [B, T, C].

    Causal self-attention (step t attends only to glimpses 0..t) with a residual
    connection and layer norm, then a GRU.  Both are causal, so the logits after
    step t depend only on the glimpses taken so far.  The GRU is unrolled: measured
    here, `unroll=False` needs Flex TensorList ops in TFLite, `unroll=True` converts
    to builtin ops.
    """

    def __init__(self, num_classes: int, units: int = 256, heads: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.units = units
        self.heads = heads
        self.attention = None  # Built once the embedding width is known.
        self.norm = keras.layers.LayerNormalization()
        self.gru = keras.layers.GRU(units, return_sequences=True, unroll=True)
        self.logits = keras.layers.Dense(num_classes)

    def build(self, input_shape) -> None:
        width = int(input_shape[-1])
        self.attention = keras.layers.MultiHeadAttention(self.heads, key_dim=width // self.heads)
        self.attention.build(input_shape, input_shape)
        self.norm.build(input_shape)
        self.gru.build(input_shape[:-1] + (width,))
        self.logits.build(input_shape[:-1] + (self.units,))
        super().build(input_shape)

    def call(self, embeddings: tf.Tensor) -> tf.Tensor:
        attended = self.attention(embeddings, embeddings, use_causal_mask=True)
        return self.logits(self.gru(self.norm(embeddings + attended)))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(num_classes=self.num_classes, units=self.units, heads=self.heads)
        return config
