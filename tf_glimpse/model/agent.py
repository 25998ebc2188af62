"""The glimpse agent: vision (a glimpse sensor) and memory (an LSTM) that choose where to look.

One episode of T steps, for t = 0 .. T-1:

1. Policy (`LocationPolicy`): a `tfp.distributions.Categorical` over the N*N grid
   cells.  Its logits come from the memory state h_{t-1}; the first location (t = 0,
   nothing seen yet) is drawn from a learned, image-independent logit vector
   (`initial_logits`), or with `context` from h_{-1}, set by a coarse view of the
   whole canvas (`ContextNetwork`).  With `saliency` a convolutional detector on
   the pooled canvas adds the image's logit per cell at every step (`SaliencyMap`).
   With `local_moves` a second head on h_{t-1} scores the moves from the last cell.
   With `mask_visited` cells already looked at have probability 0.
2. Sensor: the glimpse at the chosen cell (`GlimpseSensor`, k scales).
3. Encoder: "what" + "where" -> embedding e_t.
4. Memory: h_t = LSTM(e_t, h_{t-1}).
5. Baseline: b_t = V(h_{t-1}), a value estimate of the state the action was chosen
   in; its input is stop-gradiented, so the value loss does not shape the memory.

After the loop the `StepClassifier` turns e_0..e_T-1 into class logits after every
step (causally).  Gradients: the classification loss trains encoder and classifier;
the memory loss (`memory_head` on h_t) trains memory, memory head and context;
REINFORCE trains policy (with its move head), memory, context, saliency map and
initial logits (the memory reads a stop-gradiented e_t, unless `memory_trains_encoder`:
then REINFORCE and the memory loss train the encoder too); the value loss trains the
baseline head only.  The policy chooses locations from memory (and the saliency map
and the last cell) only, and actions are discrete samples, so no
gradient of the classification loss can reach the policy through the chosen location.

Policies (`mode`): "sample" (training), "greedy" (argmax, deterministic; evaluation
and export), "random" (uniform over cells; pre-training and the policy report) and
"given" (actions supplied by the caller, e.g. a fixed raster).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_glimpse.config import GlimpseConfig
from tf_glimpse.model.layers import (
    POLICY_MODES,
    ContextNetwork,
    GlimpseEncoder,
    LocationPolicy,
    SaliencyMap,
    StepClassifier,
)
from tf_glimpse.model.sensor import GlimpseSensor


@keras.saving.register_keras_serializable(package="tf_glimpse")
class GlimpseAgent(keras.Model):
    """Images [B, I, I, C] (float in [0, 1]) -> a dict describing one episode.

    (Over 80 lines: the step's pieces, `initial_state`, `observe`, `remember` and
    `next_logits`, are methods because the exported step model calls them one by one.)

    Returned keys (T steps, A = N*N actions, C classes):
    ``actions`` [B, T] int32, ``locations`` [B, T, 2] (x, y), ``log_probs`` [B, T],
    ``entropies`` [B, T], ``baselines`` [B, T], ``policy_logits`` [B, T, A],
    ``step_logits`` [B, T, C] (the classifier), ``memory_logits`` [B, T, C] (the
    memory's own head, read by its training loss only) and ``glimpses`` [B, T, k, P, P, C].
    """

    def __init__(self, config: GlimpseConfig | dict, **kwargs):
        """Build every part from `config` (a `GlimpseConfig`, or its dict from `get_config`)."""
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = GlimpseConfig.from_dict(config)
        config = config.resolved()  # get_config stores the encoder built, not "auto".
        self.config = config
        self.steps = config.steps
        self.memory_trains_encoder = config.memory_trains_encoder
        self.memory_units = config.memory_units
        self.sensor = GlimpseSensor(config.img_size, config.patch_size, config.stride,
                                    config.scales, backend=config.sensor_backend)
        self.grid = self.sensor.grid
        self.num_actions = self.grid.num_actions
        self.centres = tf.constant(self.grid.centres())  # [A, 2]
        self.encoder = GlimpseEncoder(config.encoder_kind, config.glimpse_units,
                                      config.location_units, config.embedding_units)
        self.memory = keras.layers.LSTMCell(config.memory_units)
        self.policy = LocationPolicy(self.num_actions, learned_first=not config.context,
                                     mask_visited=config.mask_visited,
                                     move_radius=config.local_moves, name="location_policy")
        self.baseline_head = keras.layers.Dense(1, name="baseline_head")
        # The memory's own classifier: its loss makes h_t carry what the glimpses showed.
        self.memory_head = keras.layers.Dense(config.num_classes, name="memory_head")
        self.context = (ContextNetwork(config.img_size, config.patch_size, config.memory_units)
                        if config.context else None)
        self.saliency = (SaliencyMap(config.img_size, config.patch_size, config.stride,
                                     units=config.saliency_units,
                                     detail=config.saliency_detail)
                         if config.saliency else None)
        self.classifier = StepClassifier(config.num_classes, config.classifier_units,
                                         config.attention_heads)

    @classmethod
    def from_glimpse_config(cls, config: GlimpseConfig) -> GlimpseAgent:
        """The agent described by a run's `GlimpseConfig`, built and ready to use."""
        agent = cls(config)
        agent(tf.zeros([1, config.img_size, config.img_size, config.channels]))
        return agent

    # --------------------------------------------------------------- one step
    def initial_state(self, images: tf.Tensor) -> list[tf.Tensor]:
        """The memory's state [h, c] before the first glimpse, each [B, memory_units].

        Zeros, or with `context` the context network's reading of the whole canvas.
        """
        if self.context is not None:
            return self.context(images)
        zeros = tf.zeros([tf.shape(images)[0], self.memory_units])
        return [zeros, zeros]

    def saliency_logits(self, images: tf.Tensor) -> tf.Tensor | None:
        """The image's logit per cell [B, A] added to every step's policy, or None."""
        return None if self.saliency is None else self.saliency(images)

    def next_logits(self, hidden: tf.Tensor, step: int, visited: tf.Tensor | None,
                    saliency: tf.Tensor | None = None,
                    previous: tf.Tensor | None = None) -> tf.Tensor:
        """Logits [B, A] whose argmax is the greedy cell of `step`, from memory h_{step-1}
        (and the image's `saliency_logits`, and the cell `previous` [B] of step - 1).

        `LocationPolicy.ranking`: visited cells rank below all others without the
        distribution's -1e9, so that the exported (and int8) models keep the range.
        """
        return self.policy.ranking(hidden, step, visited, saliency, previous)

    def observe(self, images: tf.Tensor, actions: tf.Tensor,
                state: list[tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor, list[tf.Tensor]]:
        """Glimpse at `actions`, encode, update memory -> (glimpses, embedding, new state)."""
        glimpses = self.sensor(images, actions)
        embedding, state = self.remember(glimpses, actions, state)
        return glimpses, embedding, state

    def remember(self, glimpses: tf.Tensor, actions: tf.Tensor,
                 state: list[tf.Tensor]) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """Encode glimpses [B, k, P, P, C] taken at `actions` [B], update the memory.

        Returns (embedding e_t [B, D], new state [h, c]).  The training episode and
        the exported step model (which gets its glimpses from outside) both use it.
        """
        locations = tf.gather(self.centres, actions)
        embedding = self.encoder(glimpses, locations)
        # The memory is trained by REINFORCE (through the policy head) and by its own
        # classification loss (`memory_head`).  By default their gradients stop at its
        # input, so the encoder is shaped by the classifier alone; with
        # `memory_trains_encoder` they reach the encoder too.
        memory_input = embedding if self.memory_trains_encoder else tf.stop_gradient(embedding)
        _, state = self.memory(memory_input, state)
        return embedding, list(state)

    # ------------------------------------------------------------ the episode
    def call(self, images: tf.Tensor, mode: str = "greedy", seed: tf.Tensor | None = None,
             actions: tf.Tensor | None = None, training: bool = False) -> dict[str, tf.Tensor]:
        if mode not in POLICY_MODES:
            raise ValueError(f"mode={mode!r}; valid values: {', '.join(POLICY_MODES)}")
        if mode in ("sample", "random") and seed is None:
            raise ValueError(f"mode={mode!r} needs a stateless seed tensor of shape [2]")
        if mode == "given" and actions is None:
            raise ValueError("mode='given' needs actions [B, T]")
        images = tf.convert_to_tensor(images, tf.float32)
        batch = tf.shape(images)[0]
        # TFP's stateless samplers take int32 seeds; one independent seed per step.
        step_seeds = (tf.cast(tf.random.experimental.stateless_split(seed, self.steps), tf.int32)
                      if seed is not None else [None] * self.steps)
        state = self.initial_state(images)
        saliency = self.saliency_logits(images)
        visited = self.policy.no_visits(batch)
        action = None  # The previous step's cell: none before the first glimpse.
        records = {key: [] for key in ("actions", "log_probs", "entropies", "baselines",
                                       "policy_logits", "embeddings", "glimpses",
                                       "memory_logits")}
        for step in range(self.steps):
            choice = self.policy(state[0], step=step, visited=visited, mode=mode,
                                 seed=step_seeds[step], saliency=saliency, previous=action,
                                 given=None if actions is None else actions[:, step])
            action = choice["action"]
            baseline = self.baseline_head(tf.stop_gradient(state[0]))[:, 0]
            glimpses, embedding, state = self.observe(images, action, state)
            visited = self.policy.visit(visited, action)
            records["actions"].append(action)
            records["log_probs"].append(choice["log_prob"])
            records["entropies"].append(choice["entropy"])
            records["baselines"].append(baseline)
            records["policy_logits"].append(choice["logits"])
            records["embeddings"].append(embedding)
            records["glimpses"].append(glimpses)
            records["memory_logits"].append(self.memory_head(state[0]))
        outputs = {key: tf.stack(values, axis=1) for key, values in records.items()}
        outputs["locations"] = tf.gather(self.centres, outputs["actions"])
        outputs["step_logits"] = self.classifier(outputs["embeddings"])
        return outputs

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(config=self.config.to_dict())
        return config
