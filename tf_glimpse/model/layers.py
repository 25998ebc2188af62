"""The agent's building blocks, one Keras layer each.

* `GlimpseEncoder`  - "what" (the glimpse, every scale) and "where" (its location)
  -> embedding e_t.
* `StepClassifier` - causal multi-head attention + GRU over e_0..e_t -> class
  logits after every step.
* `ContextNetwork` - a coarse view of the whole canvas -> the memory's initial
  state (DRAM's context network), so the first location can depend on the image.
* `SaliencyMap` - the whole canvas -> a logit per grid cell from one convolutional
  detector (optional, `saliency`), added to every step's policy logits.
* `LocationPolicy` - memory h_{t-1} (+ the saliency logits, + the scores of moves
  from the last glimpse) -> a distribution over the grid's cells and the cell chosen
  (RAM's location network).

The memory (an LSTM cell) and the baseline head are plain Keras layers owned by
`tf_glimpse.model.agent.GlimpseAgent`.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tf_glimpse.config import ENCODER_KINDS
from tf_glimpse.model.grid import ActionGrid, row_col, saliency_details

POLICY_MODES = ("sample", "greedy", "random", "given")
_MASKED = -1e9  # The distribution's logit of a visited cell: probability 0.


@keras.saving.register_keras_serializable(package="tf_glimpse")
class GlimpseEncoder(keras.layers.Layer):
    """Glimpses [B, k, P, P, C] and locations [B, 2] (x, y in [0, 1]) -> embeddings [B, D].

    As in RAM's glimpse network, the "what" and "where" pathways are embedded
    separately and combined: ``e = relu((W_what h_what + W_where h_where) + b)``.  The
    bias is added after the sum, not inside the "what" layer: TensorFlow's oneDNN
    remapper fuses relu(BiasAdd(MatMul) + MatMul), and grappler then logs "Node ... has
    an empty op name" every time a graph of the agent runs outside XLA (the report, a
    reloaded SavedModel).
    `kind="mlp"` flattens the glimpse; `kind="cnn"` treats the k scales (times the C
    colour channels) as the channels of two 3x3 convolutions.
    """

    def __init__(self, kind: str = "mlp", glimpse_units: int = 128, location_units: int = 64,
                 embedding_units: int = 256, **kwargs):
        super().__init__(**kwargs)
        if kind not in ENCODER_KINDS:
            raise ValueError(f"encoder kind={kind!r}; valid values: {', '.join(ENCODER_KINDS)}")
        self.kind = kind
        self.glimpse_units = glimpse_units
        self.location_units = location_units
        self.embedding_units = embedding_units
        # A Sequential, not a Python list of layers: tf.train.Checkpoint does not follow
        # Keras 3's tracked lists, so the convolutions of a list were missing from every
        # checkpoint (the best agent, --resume, the export) and came back random.
        convolutions = [keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
                        keras.layers.Conv2D(32, 3, padding="same", activation="relu")]
        self.features = keras.Sequential(
            [*(convolutions if kind == "cnn" else []), keras.layers.Flatten()], name="features")
        self.what_hidden = keras.layers.Dense(glimpse_units, activation="relu")
        self.where_hidden = keras.layers.Dense(location_units, activation="relu")
        self.what_out = keras.layers.Dense(embedding_units, use_bias=False)
        self.where_out = keras.layers.Dense(embedding_units, use_bias=False)
        self.bias = None  # Made in `build`, under the agent's name scope.

    def build(self, glimpses_shape) -> None:
        self.bias = self.add_weight(shape=(self.embedding_units,), initializer="zeros",
                                    name="bias")

    def call(self, glimpses: tf.Tensor, locations: tf.Tensor) -> tf.Tensor:
        x = glimpses
        if self.kind == "cnn":  # [B, k, P, P, C] -> [B, P, P, k * C]: scales as channels
            _, scales, height, width, channels = glimpses.shape
            x = tf.reshape(tf.transpose(glimpses, [0, 2, 3, 1, 4]),
                           [-1, height, width, scales * channels])
        what = self.what_out(self.what_hidden(self.features(x)))
        # Centre locations on 0 so the "where" pathway sees values in [-1, 1].
        where = self.where_out(self.where_hidden(2.0 * locations - 1.0))
        return tf.nn.relu((what + where) + self.bias)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(kind=self.kind, glimpse_units=self.glimpse_units,
                      location_units=self.location_units, embedding_units=self.embedding_units)
        return config


@keras.saving.register_keras_serializable(package="tf_glimpse")
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

    def step(self, embedding: tf.Tensor, step: tf.Tensor, embeddings: tf.Tensor,
             gru_state: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """The work of `call` for step t alone, with explicit state.

        embedding [B, D] is e_t, step [B] int32 is t, embeddings [B, T, D] the buffer
        of e_0..e_{t-1} (zeros elsewhere), gru_state [B, U].  Writes e_t at position
        t, lets it attend to positions 0..t only, advances the GRU by one step.
        Returns (class logits [B, C] after step t, new buffer, new GRU state): the
        same logits as `call(...)[:, t]`, up to float rounding.
        """
        steps = embeddings.shape[1]
        position = tf.one_hot(step, steps)[..., None]  # [B, T, 1]
        embeddings = embeddings * (1.0 - position) + embedding[:, None, :] * position
        seen = tf.range(steps)[None, :] <= step[:, None]  # [B, T]
        query = embedding[:, None, :]  # [B, 1, D]
        attended = self.attention(query, embeddings, attention_mask=seen[:, None, :])
        features = self.norm(query + attended)[:, 0]  # [B, D]
        gru_output, _ = self.gru.cell(features, [gru_state])
        return self.logits(gru_output), embeddings, gru_output

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(num_classes=self.num_classes, units=self.units, heads=self.heads)
        return config


@keras.saving.register_keras_serializable(package="tf_glimpse")
class ContextNetwork(keras.layers.Layer):
    """Images [B, I, I, C] -> the memory's initial state [h, c], each [B, M].

    The canvas is average-pooled by f = max(1, I // P) to about P x P pixels (a
    coarse view, like the sensor's coarsest scale), then two dense layers give
    h = tanh(.) and c.  Its pixels and FLOPs count in the benchmarks' figures.
    """

    def __init__(self, img_size: int, patch_size: int, memory_units: int, **kwargs):
        super().__init__(**kwargs)
        self.img_size = img_size
        self.patch_size = patch_size
        self.memory_units = memory_units
        self.factor = max(1, img_size // patch_size)
        self.hidden = keras.layers.Dense(memory_units, activation="relu")
        self.state = keras.layers.Dense(2 * memory_units)

    def call(self, images: tf.Tensor) -> list[tf.Tensor]:
        coarse = tf.nn.avg_pool2d(images, self.factor, self.factor, "VALID")
        coarse = tf.reshape(coarse, [tf.shape(images)[0], -1])
        hidden, cell = tf.split(self.state(self.hidden(coarse)), 2, axis=-1)
        return [tf.tanh(hidden), cell]

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(img_size=self.img_size, patch_size=self.patch_size,
                      memory_units=self.memory_units)
        return config


@keras.saving.register_keras_serializable(package="tf_glimpse")
class SaliencyMap(keras.layers.Layer):
    """Images [B, I, I, C] -> a logit per grid cell [B, A], the same detector at every cell.

    The canvas is average-pooled by s / d (s the grid's stride, d = `detail`), so that
    one cell step is d pooled pixels; 3x3 convolutions, log2(d) of them with stride 2,
    bring the map to one value per cell step (L = I // s a side), and each cell reads
    the value under its patch centre.  With d = 1 that is three convolutions on the
    canvas pooled by s (receptive field 7 * s canvas pixels); a larger d sees smaller
    objects (a 28-pixel digit is under two pooled pixels at s = 16).  Shifting the
    canvas by s pixels shifts the map by one cell, so what is learned at one cell holds
    at all of them.  The last convolution starts at zero: a new agent's policy is the
    location head's alone.
    """

    def __init__(self, img_size: int, patch_size: int, stride: int, units: int = 16,
                 detail: int = 1, **kwargs):
        super().__init__(**kwargs)
        if detail not in saliency_details(stride):
            raise ValueError(f"detail={detail} must be a power of two that divides "
                             f"stride={stride}")
        self.img_size = img_size
        self.patch_size = patch_size
        self.stride = stride
        self.units = units
        self.detail = detail
        grid = ActionGrid(img_size, patch_size, stride)
        self.coarse_size = img_size // stride
        # The coarse pixel under each cell's patch centre, from the grid's own corners.
        corners = np.stack(grid.top_left(np.arange(grid.num_actions)), axis=-1)  # [A, 2]
        coarse = np.clip(np.floor((corners + patch_size / 2.0) / stride), 0,
                         self.coarse_size - 1).astype(np.int32)
        self.cells = tf.constant(coarse[:, 0] * self.coarse_size + coarse[:, 1])  # [A]
        halvings = detail.bit_length() - 1
        middle = ([keras.layers.Conv2D(units, 3, strides=2, padding="same", activation="relu")
                   for _ in range(halvings)]
                  or [keras.layers.Conv2D(units, 3, padding="same", activation="relu")])
        self.detector = keras.Sequential([
            keras.layers.Conv2D(units, 3, padding="same", activation="relu"),
            *middle,
            keras.layers.Conv2D(1, 3, padding="same", kernel_initializer="zeros"),
        ], name="detector")

    def call(self, images: tf.Tensor) -> tf.Tensor:
        pool = self.stride // self.detail
        pooled = tf.nn.avg_pool2d(images, pool, pool, "VALID")  # [B, I // pool, ...]
        # ceil(I // pool / d) >= L values a side: the first L x L are the cells' map.
        size = self.coarse_size
        values = self.detector(pooled)[:, :size, :size, :]
        return tf.gather(tf.reshape(values, [-1, size * size]), self.cells, axis=1)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(img_size=self.img_size, patch_size=self.patch_size, stride=self.stride,
                      units=self.units, detail=self.detail)
        return config


@keras.saving.register_keras_serializable(package="tf_glimpse")
class LocationPolicy(keras.layers.Layer):
    """Memory h_{t-1} [B, M] -> a `tfp.distributions.Categorical` over the A grid cells, and a cell.

    (Over 80 lines: the visited mask, the greedy ranking the export uses and the four
    policy modes are one distribution's parts.)

    The logits come from a dense head on the memory state (plus, with a saliency
    map, the image's logit per cell, and with `move_radius` R > 0 a second head's
    score for each move of up to R cells a side from the previous glimpse, given to
    the cell that move reaches: one rule for all cells); for the first cell
    (nothing seen yet) from a learned, image-independent vector
    (`initial_logits`) unless the memory's initial state already holds a view of
    the image (`learned_first=False`, with a context network).  With
    `mask_visited` the cells already looked at (visited [B, A] > 0) are excluded.

    Calling the layer chooses a cell.  Choices (`mode`): "sample" (training), "greedy"
    (argmax: evaluation and export), "random" (uniform over the cells not visited:
    pre-training and the policy report) and "given" (actions supplied by the caller).
    The chosen cell is a discrete sample with its gradient stopped: only REINFORCE,
    through the log-probability, trains the policy.
    """

    def __init__(self, num_actions: int, learned_first: bool = True, mask_visited: bool = True,
                 move_radius: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.num_actions = num_actions
        self.learned_first = learned_first
        self.mask_visited = mask_visited
        self.move_radius = move_radius
        self.head = keras.layers.Dense(num_actions, name="policy_head")
        self.initial_logits = self.add_weight(shape=(num_actions,), initializer="zeros",
                                              name="initial_logits")
        self.move_head = None
        if move_radius:
            side = round(num_actions ** 0.5)  # The grid is square: A = N * N.
            # Row and column of every cell, as the grid numbers them.
            rows, cols = row_col(np.arange(num_actions, dtype=np.int32), side)
            self.cell_rows, self.cell_cols = tf.constant(rows), tf.constant(cols)
            # Zeros: a new agent's policy is the other heads' alone.
            self.move_head = keras.layers.Dense((2 * move_radius + 1) ** 2,
                                                kernel_initializer="zeros", name="move_head")

    def build(self, input_shape) -> None:
        self.head.build(input_shape)
        if self.move_head is not None:
            self.move_head.build(input_shape)

    def move_logits(self, hidden: tf.Tensor, previous: tf.Tensor) -> tf.Tensor:
        """Scores [B, A] of the moves from the cells `previous` [B] int32, from h [B, M].

        Cell j gets the move head's score of (row_j - row_prev, col_j - col_prev)
        when both are within R, else 0.
        """
        radius, width = self.move_radius, 2 * self.move_radius + 1
        d_row = self.cell_rows[None, :] - tf.gather(self.cell_rows, previous)[:, None]  # [B, A]
        d_col = self.cell_cols[None, :] - tf.gather(self.cell_cols, previous)[:, None]
        near = (tf.abs(d_row) <= radius) & (tf.abs(d_col) <= radius)
        # Index width^2 is a zero appended to the scores: the cells out of reach.
        index = tf.where(near, (d_row + radius) * width + d_col + radius, width * width)
        scores = self.move_head(hidden)  # [B, width^2]
        scores = tf.concat([scores, tf.zeros_like(scores[:, :1])], axis=-1)
        return tf.gather(scores, index, batch_dims=1)

    def no_visits(self, batch: tf.Tensor | int) -> tf.Tensor | None:
        """The visited cells before the first glimpse: int32 zeros [B, A] (None without a mask).

        int32, not float: an int8 model keeps integer tensors exact, while a float 0/1
        mask would be quantized with the activations (measured: it came out as 0.5
        everywhere, every cell "visited").
        """
        if not self.mask_visited:
            return None
        return tf.zeros([batch, self.num_actions], tf.int32)

    def visit(self, visited: tf.Tensor | None, action: tf.Tensor) -> tf.Tensor | None:
        """`visited` [B, A] with the cells `action` [B] marked (1)."""
        if visited is None:
            return None
        return tf.maximum(visited, tf.one_hot(action, self.num_actions, dtype=visited.dtype))

    def raw_logits(self, hidden: tf.Tensor, step: int, saliency: tf.Tensor | None = None,
                   previous: tf.Tensor | None = None) -> tf.Tensor:
        """Unmasked logits [B, A] of the cell of `step` (a Python int), from h_{step-1}
        plus, if given, the image's saliency logits [B, A] (`SaliencyMap`) and, with a
        move head, the scores of the moves from `previous` [B] (the cell of step - 1)."""
        logits = self.head(hidden)
        if step == 0 and self.learned_first:
            logits = tf.zeros_like(logits) + self.initial_logits
        if self.move_head is not None and previous is not None:
            logits = logits + self.move_logits(hidden, previous)
        return logits if saliency is None else logits + saliency

    def logits(self, hidden: tf.Tensor, step: int, visited: tf.Tensor | None = None,
               saliency: tf.Tensor | None = None,
               previous: tf.Tensor | None = None) -> tf.Tensor:
        """The distribution's logits [B, A]: visited cells get -1e9 (probability 0)."""
        return self.mask(self.raw_logits(hidden, step, saliency, previous), visited)

    def mask(self, logits: tf.Tensor, visited: tf.Tensor | None) -> tf.Tensor:
        """With `mask_visited`, give visited cells (visited > 0) a logit of -1e9."""
        if not self.mask_visited or visited is None:
            return logits
        return tf.where(visited > 0, tf.cast(_MASKED, logits.dtype), logits)

    def ranking(self, hidden: tf.Tensor, step: int, visited: tf.Tensor | None = None,
                saliency: tf.Tensor | None = None,
                previous: tf.Tensor | None = None) -> tf.Tensor:
        """Logits [B, A] whose argmax is the greedy cell: visited cells one below the lowest logit.

        Same argmax as `call` (ties included), but without the -1e9: the values keep
        the range of the real logits, so an int8 model quantizes them finely enough
        to tell the cells apart.
        """
        logits = self.raw_logits(hidden, step, saliency, previous)
        return self._rank_below(logits, visited)

    def _rank_below(self, logits: tf.Tensor, visited: tf.Tensor | None) -> tf.Tensor:
        if not self.mask_visited or visited is None:
            return logits
        lowest = tf.reduce_min(logits, axis=-1, keepdims=True) - 1.0
        return tf.where(visited > 0, lowest, logits)

    def call(self, hidden: tf.Tensor, step: int = 1, visited: tf.Tensor | None = None,
             mode: str = "greedy", seed: tf.Tensor | None = None,
             given: tf.Tensor | None = None, saliency: tf.Tensor | None = None,
             previous: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        """The cell of `step` (a Python int, passed by keyword) under policy `mode`.

        `seed` is an int32 [2] stateless seed ("sample" and "random"), `given` the
        actions [B] of "given", `saliency` the image's cell logits [B, A] or None,
        `previous` the cells [B] of step - 1 (None at step 0).
        Returns ``action`` [B] int32, ``log_prob`` [B] and ``entropy`` [B] (of the
        distribution the action is scored under: uniform for "random") and
        ``logits`` [B, A] (that distribution's logits).
        """
        raw = self.raw_logits(hidden, step, saliency, previous)
        if mode == "random":
            raw = tf.zeros_like(raw)
        logits = self.mask(raw, visited)
        # Cells drawn as float32 values (exact for any grid below 2^24 cells): the same
        # cells, log-probabilities and entropy as int32 draws, but TFP's sample then
        # transposes floats.  An integer Transpose makes TensorFlow's oneDNN graph rewrite
        # log "oneDNN supports DT_INT32 only on platforms with AVX-512" outside XLA on
        # some CPUs (AMD EPYC here), int32 and int64 alike.
        distribution = tfp.distributions.Categorical(logits=logits, dtype=tf.float32)
        if mode == "given":
            action = tf.cast(given, tf.int32)
        elif mode == "greedy":
            action = tf.argmax(self._rank_below(raw, visited), axis=-1, output_type=tf.int32)
        else:
            action = tf.cast(distribution.sample(seed=seed), tf.int32)
        action = tf.stop_gradient(action)
        return {"action": action, "log_prob": distribution.log_prob(tf.cast(action, tf.float32)),
                "entropy": distribution.entropy(), "logits": logits}

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(num_actions=self.num_actions, learned_first=self.learned_first,
                      mask_visited=self.mask_visited, move_radius=self.move_radius)
        return config
