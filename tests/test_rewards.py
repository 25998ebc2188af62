"""Rewards, returns and the REINFORCE losses, on hand-computed numbers."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tf_glimpse.training import rewards


def logits_with_true_probability(p: float, label: int = 0, classes: int = 10) -> np.ndarray:
    """Logits whose softmax gives the true class probability p and spreads the rest evenly."""
    rest = (1.0 - p) / (classes - 1)
    logits = np.full(classes, math.log(rest))
    logits[label] = math.log(p)
    return logits


def test_step_reward_is_the_clipped_decrease_of_cross_entropy():
    # CE after each step: log 10 (no information), log 2, log 2 + 0.05 (slightly worse), log 4.
    probabilities = [0.1, 0.5, 0.5 * math.exp(-0.05), 0.25]
    logits = np.stack([logits_with_true_probability(p) for p in probabilities])[None]
    labels = np.array([0])
    got = rewards.step_rewards(tf.constant(logits, tf.float32), labels, clip=0.1).numpy()[0]
    # r_0 = log10 - log10 = 0; r_1 = log10 - log2 = 1.61 -> clipped to +0.1;
    # r_2 = -0.05 (information lost, inside the clip); r_3 = log2 + 0.05 - log4 -> -0.1.
    np.testing.assert_allclose(got, [0.0, 0.1, -0.05, -0.1], atol=1e-5)
    unclipped = rewards.step_rewards(tf.constant(logits, tf.float32), labels, clip=10.0).numpy()[0]
    np.testing.assert_allclose(unclipped[1], math.log(10) - math.log(2), atol=1e-5)


def test_final_reward_is_plus_or_minus_magnitude():
    logits = tf.constant([[0.0, 5.0, 0.0], [5.0, 0.0, 0.0]])
    got = rewards.final_rewards(logits, tf.constant([1, 2]), magnitude=2.0).numpy()
    np.testing.assert_array_equal(got, [2.0, -2.0])


def test_episode_rewards_add_the_final_reward_at_the_last_step_only():
    logits = np.stack([logits_with_true_probability(p) for p in (0.1, 0.1, 0.9)])[None]
    got = rewards.episode_rewards(tf.constant(logits, tf.float32), np.array([0]), 2.0, 0.1).numpy()
    np.testing.assert_allclose(got[0], [0.0, 0.0, 0.1 + 2.0], atol=1e-5)
    wrong = rewards.episode_rewards(tf.constant(logits, tf.float32), np.array([3]), 2.0, 0.1)
    assert wrong.numpy()[0, -1] < -1.9


@pytest.mark.parametrize("gamma, expected", [(1.0, [6.0, 5.0, 3.0]), (0.5, [2.75, 3.5, 3.0])])
def test_discounted_returns(gamma, expected):
    got = rewards.discounted_returns(tf.constant([[1.0, 2.0, 3.0]]), gamma).numpy()[0]
    np.testing.assert_allclose(got, expected)


def test_reinforce_gradient_is_minus_advantage_and_the_advantage_is_constant():
    log_probs = tf.Variable([[-1.0, -2.0]])
    returns = tf.Variable([[3.0, 1.0]])
    baselines = tf.Variable([[0.5, 2.0]])
    with tf.GradientTape(persistent=True) as tape:
        loss = tf.reduce_sum(rewards.reinforce_loss(log_probs, returns, baselines))
    np.testing.assert_allclose(tape.gradient(loss, log_probs).numpy(), [[-2.5, 1.0]])
    assert tape.gradient(loss, baselines) is None
    assert tape.gradient(loss, returns) is None
    np.testing.assert_allclose(float(loss), -(-1.0 * 2.5 + -2.0 * -1.0))


def test_baseline_loss_trains_the_baseline_only():
    returns = tf.Variable([[1.0, 3.0]])
    baselines = tf.Variable([[0.0, 1.0]])
    with tf.GradientTape(persistent=True) as tape:
        loss = tf.reduce_sum(rewards.baseline_loss(baselines, returns))
    np.testing.assert_allclose(float(loss), (1.0 + 4.0) / 2)
    np.testing.assert_allclose(tape.gradient(loss, baselines).numpy(), [[-1.0, -2.0]])
    assert tape.gradient(loss, returns) is None


def test_classification_loss_final_or_all_steps():
    logits = np.stack([logits_with_true_probability(p) for p in (0.5, 0.25)])[None]
    logits = tf.constant(logits, tf.float32)
    final = rewards.classification_loss(logits, np.array([0]), all_steps=False).numpy()[0]
    mean = rewards.classification_loss(logits, np.array([0]), all_steps=True).numpy()[0]
    np.testing.assert_allclose(final, math.log(4), rtol=1e-5)
    np.testing.assert_allclose(mean, (math.log(2) + math.log(4)) / 2, rtol=1e-5)


def test_leave_one_out_mean_is_the_mean_of_the_other_episodes_of_the_image():
    from tf_glimpse.training.rewards import leave_one_out_mean

    returns = tf.constant([[1.0, 2.0], [3.0, 4.0], [5.0, 0.0],   # image 0, M = 3
                           [0.0, 0.0], [6.0, 3.0], [3.0, 9.0]])  # image 1
    expected = [[4.0, 2.0], [3.0, 1.0], [2.0, 3.0], [4.5, 6.0], [1.5, 4.5], [3.0, 1.5]]
    np.testing.assert_allclose(leave_one_out_mean(returns, 3).numpy(), expected)
    # M = 1: the batch mean.
    np.testing.assert_allclose(leave_one_out_mean(returns, 1).numpy(),
                               np.tile(np.mean(returns.numpy(), 0), [6, 1]))
