"""One glimpse step with explicit state: the graph of `glimpse_step.tflite`.

For sensors that read only the requested patch, the episode is driven from
outside, one glimpse at a time (see `export.drive_step_model`).  Each call takes
the glimpse the caller read at the cell the model asked for, plus the state, and
returns the policy logits for the next cell, the class probabilities so far and
the new state.  All tensors have batch size 1.

Inputs (k scales, P patch size, A = N*N cells, T steps, M/D/G = memory,
embedding and classifier widths):

    glimpse     float32 [1, k, P, P]  the patch(es) at `action`, pixel values in 0..1
    action      int32   [1]           the cell the glimpse was read at
    step        int32   [1]           the step index t = 0 .. T-1
    lstm_h      float32 [1, M]        memory state (zeros at t = 0)
    lstm_c      float32 [1, M]
    embeddings  float32 [1, T, D]     the classifier's buffer of past embeddings (zeros at t = 0)
    gru_state   float32 [1, G]        the classifier's GRU state (zeros at t = 0)
    visited     float32 [1, A]        1 for cells already looked at (zeros at t = 0)

Outputs: ``next_logits`` [1, A] (policy logits of the cell for step t + 1; with
``mask_visited`` visited cells get -1e9), ``probabilities`` [1, C] (class
probabilities after glimpses 0..t) and the new ``lstm_h``, ``lstm_c``,
``embeddings``, ``gru_state`` and ``visited`` (same names as the inputs, so the
caller feeds them straight back).

The classifier is causal, so its work for step t is: write e_t at position t of
the buffer, let e_t attend to positions 0..t only (the mask comes from `step`),
then advance the GRU by one step.  This reproduces the full model's step_logits
[:, t] exactly, up to float rounding.  The first cell (nothing seen yet) comes from
`initial_logits`, which the export writes to `export_info.json`.
"""

from __future__ import annotations

import tensorflow as tf

from export.episode import tf_variables
from tf_glimpse.agent import GlimpseAgent

STATE_NAMES = ("lstm_h", "lstm_c", "embeddings", "gru_state", "visited")


def state_shapes(agent: GlimpseAgent) -> dict[str, list[int]]:
    """Shapes of the five state tensors (batch size 1)."""
    classifier = agent.classifier
    return {
        "lstm_h": [1, agent.memory_units],
        "lstm_c": [1, agent.memory_units],
        "embeddings": [1, agent.steps, agent.encoder.embedding_units],
        "gru_state": [1, classifier.units],
        "visited": [1, agent.num_actions],
    }


def step_specs(agent: GlimpseAgent) -> list[tf.TensorSpec]:
    """The input signature of the step model, in argument order."""
    patch = agent.grid.patch_size
    specs = [
        tf.TensorSpec([1, agent.sensor.scales, patch, patch], tf.float32, name="glimpse"),
        tf.TensorSpec([1], tf.int32, name="action"),
        tf.TensorSpec([1], tf.int32, name="step"),
    ]
    specs += [tf.TensorSpec(shape, tf.float32, name=name)
              for name, shape in state_shapes(agent).items()]
    return specs


def initial_logits(agent: GlimpseAgent) -> tf.Tensor:
    """Policy logits [A] of the first cell (image independent)."""
    visited = tf.zeros([1, agent.num_actions])
    return agent.next_logits(tf.zeros([1, agent.memory_units]), 0, visited)[0]


class StepModule(tf.Module):
    """A `tf.Module` around a trained agent: one glimpse step with explicit state."""

    def __init__(self, agent: GlimpseAgent, name: str = "glimpse_step"):
        super().__init__(name=name)
        self.agent = agent
        self.weights = tf_variables(agent)  # Tracked explicitly, as in EpisodeModule.

    def step(self, glimpse: tf.Tensor, action: tf.Tensor, step: tf.Tensor, lstm_h: tf.Tensor,
             lstm_c: tf.Tensor, embeddings: tf.Tensor, gru_state: tf.Tensor,
             visited: tf.Tensor) -> dict[str, tf.Tensor]:
        """Glimpse t at `action` + state -> next-cell logits, class probabilities, new state."""
        agent, classifier = self.agent, self.agent.classifier
        steps = agent.steps

        # Vision and memory, exactly as GlimpseAgent.observe (minus the sensor).
        location = tf.gather(agent.centres, action)  # [1, 2]
        embedding = agent.encoder(glimpse, location)  # [1, D]
        _, (lstm_h, lstm_c) = agent.memory(embedding, [lstm_h, lstm_c])

        # Classifier: write e_t at position t, attend causally to 0..t, one GRU step.
        position = tf.one_hot(step, steps)[..., None]  # [1, T, 1]
        embeddings = embeddings * (1.0 - position) + embedding[:, None, :] * position
        seen = tf.range(steps)[None, :] <= step[:, None]  # [1, T]
        query = embedding[:, None, :]  # [1, 1, D]
        attended = classifier.attention(query, embeddings, attention_mask=seen[:, None, :])
        features = classifier.norm(query + attended)[:, 0]  # [1, D]
        gru_output, _ = classifier.gru.cell(features, [gru_state])
        class_logits = classifier.logits(gru_output)

        # Policy for the next step, from the new memory state.
        visited = tf.maximum(visited, tf.one_hot(action, agent.num_actions))
        next_logits = agent.mask(agent.policy_head(lstm_h), visited)
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
        return tf.function(self.step).get_concrete_function(*step_specs(self.agent))
