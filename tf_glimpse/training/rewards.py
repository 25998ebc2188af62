"""Rewards, returns and the losses of REINFORCE with a learned baseline.

Rewards (per example, T steps):

* step reward  r_t = clip(CE_{t-1} - CE_t, -clip, clip): the DECREASE of the
  cross-entropy of the true class after glimpse t (information gain), with
  CE_{-1} = log(num_classes), the cross-entropy of knowing nothing;
* final reward +R if the final prediction is right, else -R, added to the last step.

Returns G_t = sum_{t' >= t} gamma^(t'-t) r_t'.  The advantage is
G_t - mean(G_t) - b_t, with b_t the agent's learned value head and mean(G_t) the
batch mean or, with M > 1 sampled episodes per image, the mean of the other M - 1
episodes of the same image (leave-one-out).

Every loss here is per example ([B]); the training step averages them over the
global batch, so the same code is right under any `tf.distribute.Strategy`.
"""

from __future__ import annotations

import math

import tensorflow as tf


def cross_entropies(step_logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Cross-entropy of the true class after every step: [B, T, C], [B] -> [B, T]."""
    steps = tf.shape(step_logits)[1]
    tiled = tf.tile(tf.cast(labels, tf.int32)[:, None], [1, steps])
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tiled, logits=step_logits)


def step_rewards(step_logits: tf.Tensor, labels: tf.Tensor, clip: float) -> tf.Tensor:
    """r_t = clip(CE_{t-1} - CE_t, -clip, clip) with CE_{-1} = log(C): [B, T]."""
    ce = cross_entropies(step_logits, labels)
    num_classes = step_logits.shape[-1]
    prior = tf.fill(tf.shape(ce[:, :1]), math.log(num_classes))
    previous = tf.concat([prior, ce[:, :-1]], axis=1)
    return tf.clip_by_value(previous - ce, -clip, clip)


def final_rewards(final_logits: tf.Tensor, labels: tf.Tensor, magnitude: float) -> tf.Tensor:
    """+magnitude where argmax(final_logits) == label, else -magnitude: [B]."""
    correct = tf.equal(tf.argmax(final_logits, axis=-1, output_type=tf.int32),
                       tf.cast(labels, tf.int32))
    return tf.where(correct, magnitude, -magnitude)


def episode_rewards(step_logits: tf.Tensor, labels: tf.Tensor, final_reward: float,
                    step_clip: float) -> tf.Tensor:
    """Step rewards with the final reward added at the last step: [B, T], no gradient."""
    rewards = step_rewards(step_logits, labels, step_clip)
    final = final_rewards(step_logits[:, -1], labels, final_reward)
    last = tf.one_hot(tf.shape(rewards)[1] - 1, tf.shape(rewards)[1])
    return tf.stop_gradient(rewards + final[:, None] * last[None, :])


def discounted_returns(rewards: tf.Tensor, gamma: float) -> tf.Tensor:
    """G_t = sum_{t' >= t} gamma^(t'-t) r_t' for rewards [B, T] -> [B, T]."""
    steps = rewards.shape[1]
    returns, running = [], tf.zeros_like(rewards[:, 0])
    for t in reversed(range(steps)):
        running = rewards[:, t] + gamma * running
        returns.append(running)
    return tf.stack(returns[::-1], axis=1)


def reinforce_loss(log_probs: tf.Tensor, returns: tf.Tensor, baselines: tf.Tensor) -> tf.Tensor:
    """-sum_t log pi(a_t | h_{t-1}) * stop_gradient(G_t - b_t): [B].

    The advantage is a constant for the policy: neither the returns nor the
    baseline receive gradient from this loss.
    """
    advantage = tf.stop_gradient(returns - baselines)
    return -tf.reduce_sum(log_probs * advantage, axis=1)


def baseline_loss(baselines: tf.Tensor, returns: tf.Tensor) -> tf.Tensor:
    """Mean squared error of the baseline against the (constant) returns: [B]."""
    return tf.reduce_mean(tf.square(tf.stop_gradient(returns) - baselines), axis=1)


def classification_loss(step_logits: tf.Tensor, labels: tf.Tensor, all_steps: bool) -> tf.Tensor:
    """Cross-entropy of the final prediction, or averaged over every step: [B]."""
    ce = cross_entropies(step_logits, labels)
    return tf.reduce_mean(ce, axis=1) if all_steps else ce[:, -1]


def leave_one_out_mean(returns: tf.Tensor, samples_per_image: int) -> tf.Tensor:
    """The reference return of each episode: [B, T] -> [B, T], no gradient.

    With M = samples_per_image > 1 the batch holds M consecutive episodes of each
    image, and an episode's reference is the mean return of the other M - 1 of its
    image.  With M = 1 it is the batch mean.
    """
    returns = tf.stop_gradient(returns)
    if samples_per_image == 1:
        return tf.zeros_like(returns) + tf.reduce_mean(returns, axis=0, keepdims=True)
    steps = returns.shape[1]
    grouped = tf.reshape(returns, [-1, samples_per_image, steps])
    others = (tf.reduce_sum(grouped, axis=1, keepdims=True) - grouped) / (samples_per_image - 1)
    return tf.reshape(others, tf.shape(returns))


def agent_losses(outputs: dict[str, tf.Tensor], labels: tf.Tensor, config,
                 supervised_only: bool = False,
                 entropy_weight: tf.Tensor | float | None = None) -> dict[str, tf.Tensor]:
    """All loss terms of one episode, per example ([B] each), and their weighted `total`.

    total = classification + memory_loss_weight * memory
            + reinforce_weight * reinforce + baseline_weight * baseline
            - entropy_weight * entropy.
    `entropy_weight` (default `config.entropy_weight`) may be a scalar tensor that
    follows a schedule.  With `supervised_only` (pre-training on random glimpses)
    total is classification + memory; the other terms are still reported.
    """
    if entropy_weight is None:
        entropy_weight = config.entropy_weight
    step_logits = outputs["step_logits"]
    rewards = episode_rewards(step_logits, labels, config.final_reward, config.step_reward_clip)
    returns = discounted_returns(rewards, config.gamma)
    # The baseline is a reference return (batch mean, or leave-one-out) plus the learned
    # value head b_t, which thus predicts the deviation of this state from it.  The mean
    # is right from the first step; a value head alone needs hundreds of Adam steps to
    # reach a mean return near -2, and until then every advantage is negative (measured:
    # the policy then drifts to the background).
    centred = returns - leave_one_out_mean(returns, config.samples_per_image)
    terms = {
        "classification": classification_loss(step_logits, labels, config.step_loss),
        "memory": classification_loss(outputs["memory_logits"], labels, all_steps=True),
        "reinforce": reinforce_loss(outputs["log_probs"], centred, outputs["baselines"]),
        "baseline": baseline_loss(outputs["baselines"], centred),
        "entropy": tf.reduce_mean(outputs["entropies"], axis=1),
    }
    supervised = terms["classification"] + config.memory_loss_weight * terms["memory"]
    if supervised_only:
        terms["total"] = supervised
    else:
        terms["total"] = (supervised + config.reinforce_weight * terms["reinforce"]
                          + config.baseline_weight * terms["baseline"]
                          - entropy_weight * terms["entropy"])
    terms["reward"] = tf.reduce_sum(rewards, axis=1)
    terms["step_rewards"] = rewards
    return terms
