"""The training step: one episode per example, its losses and gradients, and the update.

`TrainStep(model, optimizer, config, strategy, entropy_weight)(supervised_only)` is the
compiled step (batch, seed [2]) -> sums of the loss terms over the batch.  It is
written against `tf.distribute.Strategy`: per-example losses are averaged over the
global batch and the sums are reduced across replicas, so the default strategy (one
device, one XLA program) and MirroredStrategy share the same code.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

from tf_glimpse.analysis.metrics import step_correct
from tf_glimpse.config import GlimpseConfig
from tf_glimpse.model.grid import ActionGrid, action_id
from tf_glimpse.training.rewards import agent_losses

LOSS_TERMS = ("total", "classification", "memory", "reinforce", "baseline", "entropy", "reward")


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The `tf.distribute.Strategy` called `name` (default, mirrored or multi_worker)."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def object_cells(grid: ActionGrid, boxes: tf.Tensor, steps: int, seed: tf.Tensor) -> tf.Tensor:
    """Cells around each object: boxes int32 [B, 4] (top, left, bottom, right) -> actions [B, T].

    Each step's cell is the one whose patch centre is nearest to a point drawn
    uniformly within the object's box (`--pretrain_glimpses object`): glimpses that
    show parts of the object, at every scale, for the classifier to learn from.
    """
    boxes = tf.cast(boxes, tf.float32)
    batch = tf.shape(boxes)[0]
    where = tf.random.stateless_uniform([batch, steps, 2], seed)  # (row, col) in [0, 1)
    low, high = boxes[:, None, :2], boxes[:, None, 2:]
    point = low + where * (high - low)  # [B, T, 2] pixels
    # `ActionGrid.from_centre`'s rule (nearest patch centre), in TF ops for the XLA step.
    position = (point - grid.patch_size / 2.0 - grid.origin) / grid.stride
    index = tf.clip_by_value(tf.cast(tf.round(position), tf.int32), 0, grid.size - 1)
    return action_id(index[..., 0], index[..., 1], grid.size)


class TrainStep:
    """The compiled training steps of one agent: pre-training (random glimpses) and REINFORCE.

    (Over 80 lines: the replica step, the cross-replica gradient sum and the clipped
    update are one distributed program and are read together.)
    """

    def __init__(self, model: keras.Model, optimizer: keras.optimizers.Optimizer,
                 config: GlimpseConfig, strategy: tf.distribute.Strategy,
                 entropy_weight: Callable[[], tf.Tensor]):
        self.model = model
        self.optimizer = optimizer
        self.config = config
        self.strategy = strategy
        self.entropy_weight = entropy_weight  # The entropy bonus's weight now (a schedule).
        # Tests only: greedy training episodes (see `episode_mode`).
        self.deterministic_episodes = False
        self._compiled: dict[bool, Callable] = {}

    def replica_gradients(self, batch: dict, seed: tf.Tensor,
                           supervised_only: bool) -> tuple[list, dict]:
        """One replica's episode: its gradients and its sums of the loss terms.

        The loss is averaged over the *global* batch, so the replicas' gradients
        add up to the gradient of the global batch.  No cross-replica
        communication happens here, so XLA can compile it under any strategy.
        """
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        seed = tf.random.experimental.stateless_fold_in(seed, replica)
        variables = self.model.trainable_variables
        # M consecutive episodes of every image (for the leave-one-out baseline).
        images = tf.repeat(batch["image"], self.config.samples_per_image, axis=0)
        labels = tf.repeat(batch["label"], self.config.samples_per_image, axis=0)
        mode, actions = self.episode_mode(supervised_only), None
        if supervised_only and self.config.pretrain_glimpses == "object":
            mode = "given"
            boxes = tf.repeat(batch["box"], self.config.samples_per_image, axis=0)
            actions = object_cells(self.model.grid, boxes, self.config.steps, seed)
        with tf.GradientTape() as tape:
            outputs = self.model(images, mode=mode, seed=seed, actions=actions, training=True)
            terms = agent_losses(outputs, labels, self.config, supervised_only,
                                 self.entropy_weight())
            loss = tf.nn.compute_average_loss(terms["total"],
                                              global_batch_size=self.config.batch_size)
        gradients = tape.gradient(loss, variables)
        gradients = [tf.zeros_like(v) if g is None else g for g, v in zip(gradients, variables)]
        sums = {name: tf.reduce_sum(terms[name]) for name in LOSS_TERMS}
        sums["correct"] = tf.reduce_sum(step_correct(outputs["step_logits"], labels)[:, -1])
        sums["step_rewards"] = tf.reduce_sum(terms["step_rewards"], axis=0)
        sums["step_entropies"] = tf.reduce_sum(outputs["entropies"], axis=0)
        sums["count"] = tf.cast(tf.shape(labels)[0], tf.float32)
        return gradients, sums

    def episode_mode(self, supervised_only: bool) -> str:
        """The policy of the training episodes: random glimpses (pre-training) or sampled.

        `deterministic_episodes` (for tests only) makes it greedy, so that an
        episode depends neither on the seeds nor on how the batch is split
        across replicas.
        """
        if self.deterministic_episodes:
            return "greedy"
        return "random" if supervised_only else "sample"

    def apply_gradients(self, gradients: list) -> None:
        """Sum the replicas' gradients, clip each variable's to grad_clip, take an Adam step.

        The clipping is done here, after the sum: Keras (clipnorm) would clip
        each replica's partial gradient before its own cross-replica sum.
        """
        replicas = self.strategy.num_replicas_in_sync
        if replicas > 1:
            gradients = tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, gradients)
        if self.config.grad_clip:
            gradients = [tf.clip_by_norm(g, self.config.grad_clip) for g in gradients]
        if replicas > 1:
            # Every replica now holds the whole sum, and Keras sums the replicas'
            # gradients once more: hand it 1/replicas of it (exact for 2 replicas).
            gradients = [g / replicas for g in gradients]
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))

    def train_replica(self, batch: dict, seed: tf.Tensor, supervised_only: bool) -> dict:
        gradients, sums = self.replica_gradients(batch, seed, supervised_only)
        self.apply_gradients(gradients)
        return sums

    def __call__(self, supervised_only: bool):
        """The compiled, distributed training step: (batch, seed [2]) -> summed loss terms.

        One per phase (pre-training on random glimpses, or REINFORCE), built on first use.
        """
        if supervised_only not in self._compiled:
            if self.config.strategy == "default":
                # One XLA program: the episode, its gradients and the update.
                replica_step = tf.function(self.train_replica,
                                           jit_compile=self.config.jit_compile)
            else:
                # XLA compiles the episode and its gradients.  The update synchronises
                # the replicas (all-reduce, merge_call), which cannot run inside XLA.
                gradients_fn = tf.function(self.replica_gradients,
                                           jit_compile=self.config.jit_compile)

                def replica_step(batch, seed, supervised_only):
                    gradients, sums = gradients_fn(batch, seed, supervised_only)
                    self.apply_gradients(gradients)
                    return sums

            @tf.function
            def step(batch, seed):
                per_replica = self.strategy.run(replica_step, args=(batch, seed, supervised_only))
                # One tensor at a time: MultiWorkerMirroredStrategy cannot reduce a dict.
                return {name: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                        for name, value in per_replica.items()}

            self._compiled[supervised_only] = step
        return self._compiled[supervised_only]
