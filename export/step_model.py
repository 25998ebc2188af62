"""One glimpse step with explicit state: the graph of `glimpse_step.tflite`.

For sensors that read only the requested patch, the episode is driven from
outside, one glimpse at a time (see `export.drive_step_model`).  Each call takes
the glimpse the caller read at the cell the model asked for, plus the state, and
returns the policy logits for the next cell, the class probabilities so far and
the new state.  All tensors have batch size 1.

Inputs (k scales, P patch size, A = N*N cells, T steps, M/D/G = memory,
embedding and classifier widths):

    glimpse     float32 [1, k, P, P, C] the patch(es) at `action`, pixel values in 0..1
    action      int32   [1]           the cell the glimpse was read at
    step        int32   [1]           the step index t = 0 .. T-1
    lstm_h      float32 [1, M]        memory state (zeros at t = 0)
    lstm_c      float32 [1, M]
    embeddings  float32 [1, T, D]     the classifier's buffer of past embeddings (zeros at t = 0)
    gru_state   float32 [1, G]        the classifier's GRU state (zeros at t = 0)
    visited     int32   [1, A]        1 for cells already looked at (zeros at t = 0)
    saliency    float32 [1, A]        (agents with `saliency` only) the image's logit per
                                      cell, from the context model; the same at every step

Outputs: ``next_logits`` [1, A] (policy logits of the cell for step t + 1, whose
argmax is the greedy cell; with ``mask_visited`` visited cells get a logit one below
the lowest, `LocationPolicy.ranking`), ``probabilities`` [1, C] (class
probabilities after glimpses 0..t) and the new ``lstm_h``, ``lstm_c``,
``embeddings``, ``gru_state`` and ``visited`` (same names as the inputs, so the
caller feeds them straight back; ``saliency`` is an input only).

Nothing here re-implements the agent: the step calls `GlimpseAgent.remember`
(encoder + memory), `StepClassifier.step` (the causal classifier's work for step
t) and `GlimpseAgent.next_logits` (`LocationPolicy.ranking`: policy + visited mask, and
the scores of the moves from `action` with ``local_moves``), the
same code the training episode runs.  This reproduces the full model's step_logits[:, t]
exactly, up to float rounding.  The first cell (nothing seen yet) comes from
`initial_logits`, which the export writes to `export_info.json`, or for an agent
with a context network from `ContextModule` (glimpse_context.tflite).
"""

from __future__ import annotations

import tensorflow as tf

from export.episode import images_spec
from tf_glimpse.model.agent import GlimpseAgent

STATE_NAMES = ("lstm_h", "lstm_c", "embeddings", "gru_state", "visited")
STATE_DTYPES = {"visited": "int32"}  # The others are float32.


def state_shapes(agent: GlimpseAgent) -> dict[str, list[int]]:
    """Shapes of the state tensors (batch size 1): the five of STATE_NAMES, and
    ``saliency`` for an agent with a saliency map."""
    classifier = agent.classifier
    shapes = {
        "lstm_h": [1, agent.memory_units],
        "lstm_c": [1, agent.memory_units],
        "embeddings": [1, agent.steps, agent.encoder.embedding_units],
        "gru_state": [1, classifier.units],
        "visited": [1, agent.num_actions],
    }
    if agent.saliency is not None:
        shapes["saliency"] = [1, agent.num_actions]
    return shapes


def step_specs(agent: GlimpseAgent) -> list[tf.TensorSpec]:
    """The input signature of the step model, in argument order."""
    patch = agent.grid.patch_size
    specs = [
        tf.TensorSpec([1, agent.sensor.scales, patch, patch, agent.config.channels], tf.float32,
                      name="glimpse"),
        tf.TensorSpec([1], tf.int32, name="action"),
        tf.TensorSpec([1], tf.int32, name="step"),
    ]
    specs += [tf.TensorSpec(shape, STATE_DTYPES.get(name, "float32"), name=name)
              for name, shape in state_shapes(agent).items()]
    return specs


def initial_logits(agent: GlimpseAgent) -> tf.Tensor | None:
    """Policy logits [A] of the first cell, or None when they depend on the image (context)."""
    if agent.context is not None:
        return None
    visited = agent.policy.no_visits(1)
    return agent.next_logits(tf.zeros([1, agent.memory_units]), 0, visited)[0]


class ContextModule(tf.Module):
    """The graph of `glimpse_context.tflite` (agents with a context network only).

    uint8 images [1, I, I, C] -> ``lstm_h``, ``lstm_c`` [1, M] (the memory's initial
    state, `GlimpseAgent.initial_state`), ``next_logits`` [1, A] (the first
    cell's logits, `GlimpseAgent.next_logits`) and, for an agent with a saliency
    map, ``saliency`` [1, A] (`GlimpseAgent.saliency_logits`, an input of every step).
    """

    def __init__(self, agent: GlimpseAgent, name: str = "glimpse_context"):
        super().__init__(name=name)
        if agent.context is None:
            raise ValueError("the agent has no context network (config.context is False)")
        self.agent = agent

    def start(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        """The state and first-cell logits of uint8 images [1, I, I, C]."""
        pixels = tf.cast(images, tf.float32) / 255.0
        lstm_h, lstm_c = self.agent.initial_state(pixels)
        saliency = self.agent.saliency_logits(pixels)
        visited = self.agent.policy.no_visits(1)
        outputs = {"lstm_h": lstm_h, "lstm_c": lstm_c,
                   "next_logits": self.agent.next_logits(lstm_h, 0, visited, saliency)}
        if saliency is not None:
            outputs["saliency"] = saliency
        return outputs

    def start_function(self) -> tf.types.experimental.ConcreteFunction:
        """The concrete function of `start` for one image."""
        spec = images_spec(self.agent.grid.img_size, self.agent.config.channels, batch=1)
        return tf.function(self.start).get_concrete_function(spec)


class StepModule(tf.Module):
    """A `tf.Module` around a trained agent: one glimpse step with explicit state."""

    def __init__(self, agent: GlimpseAgent, name: str = "glimpse_step"):
        super().__init__(name=name)
        self.agent = agent

    def step(self, glimpse: tf.Tensor, action: tf.Tensor, step: tf.Tensor, lstm_h: tf.Tensor,
             lstm_c: tf.Tensor, embeddings: tf.Tensor, gru_state: tf.Tensor,
             visited: tf.Tensor) -> dict[str, tf.Tensor]:
        """Glimpse t at `action` + state -> next-cell logits, class probabilities, new state."""
        return self._step(glimpse, action, step, lstm_h, lstm_c, embeddings, gru_state, visited)

    def step_with_saliency(self, glimpse: tf.Tensor, action: tf.Tensor, step: tf.Tensor,
                           lstm_h: tf.Tensor, lstm_c: tf.Tensor, embeddings: tf.Tensor,
                           gru_state: tf.Tensor, visited: tf.Tensor,
                           saliency: tf.Tensor) -> dict[str, tf.Tensor]:
        """`step` for an agent with a saliency map: the image's cell logits [1, A] too."""
        return self._step(glimpse, action, step, lstm_h, lstm_c, embeddings, gru_state,
                          visited, saliency)

    def _step(self, glimpse, action, step, lstm_h, lstm_c, embeddings, gru_state, visited,
              saliency=None) -> dict[str, tf.Tensor]:
        agent = self.agent
        # Vision and memory, and the classifier's step t: the agent's own code.
        embedding, (lstm_h, lstm_c) = agent.remember(glimpse, action, [lstm_h, lstm_c])
        class_logits, embeddings, gru_output = agent.classifier.step(
            embedding, step, embeddings, gru_state)

        # Policy for the next step, from the new memory state.
        visited = agent.policy.visit(visited, action)
        next_logits = agent.next_logits(lstm_h, 1, visited, saliency, previous=action)
        return {
            "next_logits": next_logits,
            "probabilities": tf.nn.softmax(class_logits, axis=-1),
            "lstm_h": lstm_h,
            "lstm_c": lstm_c,
            "embeddings": embeddings,
            "gru_state": gru_output,
            "visited": visited,
        }

    def step_function(self) -> tf.types.experimental.ConcreteFunction:
        """The concrete step function with the signature of `step_specs`."""
        # Two functions, no optional argument: the export traces every argument given.
        step = self.step if self.agent.saliency is None else self.step_with_saliency
        return tf.function(step).get_concrete_function(*step_specs(self.agent))
