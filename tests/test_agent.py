"""The agent: shapes, REINFORCE wiring, causality of the classifier, policies and masking."""

import numpy as np
import pytest
import tensorflow as tf

from tf_glimpse.config import GlimpseConfig
from tf_glimpse.model.agent import GlimpseAgent
from tf_glimpse.training.rewards import agent_losses

CONFIG = GlimpseConfig(img_size=28, clutter_count=0, patch_size=8, stride=4, steps=4,
                       embedding_units=32, memory_units=32, classifier_units=32,
                       glimpse_units=32, location_units=16, attention_heads=2, context=False)


@pytest.fixture(scope="module")
def agent() -> GlimpseAgent:
    tf.keras.utils.set_random_seed(0)
    return GlimpseAgent.from_glimpse_config(CONFIG)


@pytest.fixture(scope="module")
def images() -> tf.Tensor:
    return tf.random.stateless_uniform([6, 28, 28, 1], seed=[1, 2])


LABELS = tf.constant([0, 1, 2, 3, 4, 5])
SEED = tf.constant([3, 4], tf.int64)


def gradients_of(agent, images, term: str):
    with tf.GradientTape() as tape:
        outputs = agent(images, mode="sample", seed=SEED, training=True)
        loss = tf.reduce_mean(agent_losses(outputs, LABELS, CONFIG)[term])
    return dict(zip([v.path for v in agent.trainable_variables],
                    tape.gradient(loss, agent.trainable_variables)))


def nonzero(gradients: dict, prefix: str) -> bool:
    found = [g for name, g in gradients.items() if prefix in name and g is not None]
    return any(float(tf.reduce_max(tf.abs(g))) > 0 for g in found)


def test_output_shapes(agent, images):
    outputs = agent(images, mode="sample", seed=SEED)
    t, a = CONFIG.steps, CONFIG.num_actions
    assert outputs["actions"].shape == (6, t) and outputs["actions"].dtype == tf.int32
    assert outputs["locations"].shape == (6, t, 2)
    assert outputs["policy_logits"].shape == (6, t, a)
    assert outputs["step_logits"].shape == (6, t, 10)
    assert outputs["glimpses"].shape == (6, t, CONFIG.scales, 8, 8, 1)
    for key in ("log_probs", "entropies", "baselines"):
        assert outputs[key].shape == (6, t)
    assert np.all((outputs["actions"].numpy() >= 0) & (outputs["actions"].numpy() < a))


def test_policy_gets_gradient_from_reinforce_and_none_from_classification(agent, images):
    reinforce = gradients_of(agent, images, "reinforce")
    classification = gradients_of(agent, images, "classification")
    assert nonzero(reinforce, "policy_head") and nonzero(reinforce, "initial_logits")
    assert nonzero(reinforce, "lstm_cell")  # The memory learns to serve the policy.
    assert not nonzero(classification, "policy_head")
    assert not nonzero(classification, "initial_logits")
    assert nonzero(classification, "glimpse_encoder") and nonzero(classification, "step_classifier")
    assert not nonzero(reinforce, "glimpse_encoder")  # Policy noise never reaches the features.


def test_baseline_head_gets_no_gradient_from_the_policy_loss(agent, images):
    reinforce = gradients_of(agent, images, "reinforce")
    baseline = gradients_of(agent, images, "baseline")
    assert not nonzero(reinforce, "baseline_head")
    assert nonzero(baseline, "baseline_head")
    assert not nonzero(baseline, "lstm_cell")  # The baseline reads a stop-gradiented memory.


def test_logits_after_step_t_ignore_later_glimpses(agent, images):
    actions = np.tile(np.array([[0, 5, 10, 20]]), [6, 1])
    changed = actions.copy()
    changed[:, 2:] = [[24, 3]]
    first = agent(images, mode="given", actions=actions)["step_logits"].numpy()
    second = agent(images, mode="given", actions=changed)["step_logits"].numpy()
    np.testing.assert_allclose(first[:, :2], second[:, :2], atol=1e-6)
    assert np.abs(first[:, 2:] - second[:, 2:]).max() > 1e-4


def test_greedy_is_deterministic_and_sampling_follows_the_seed(agent, images):
    greedy = [agent(images, mode="greedy")["actions"].numpy() for _ in range(2)]
    np.testing.assert_array_equal(*greedy)
    same = [agent(images, mode="sample", seed=SEED)["actions"].numpy() for _ in range(2)]
    np.testing.assert_array_equal(*same)
    other = agent(images, mode="sample", seed=tf.constant([9, 9], tf.int64))["actions"].numpy()
    assert not np.array_equal(same[0], other)


def test_first_location_comes_from_the_learned_initial_logits(agent, images):
    agent.policy.initial_logits.assign(tf.one_hot(7, CONFIG.num_actions) * 50.0)
    try:
        actions = agent(images, mode="greedy")["actions"].numpy()
        assert np.all(actions[:, 0] == 7)
    finally:
        agent.policy.initial_logits.assign(tf.zeros([CONFIG.num_actions]))


def test_mask_visited_never_repeats_a_cell(images):
    masked = GlimpseAgent.from_glimpse_config(CONFIG.replace(mask_visited=True, steps=8))
    for mode, seed in (("sample", SEED), ("random", SEED), ("greedy", None)):
        actions = masked(images, mode=mode, seed=seed)["actions"].numpy()
        assert all(len(set(row)) == len(row) for row in actions), mode


def test_get_config_rebuilds_the_same_architecture(agent):
    clone = GlimpseAgent.from_config(agent.get_config())
    clone(tf.zeros([1, 28, 28, 1]))
    assert clone.count_params() == agent.count_params()


def test_memory_loss_trains_the_memory_and_nothing_the_policy_needs_to_explore(agent, images):
    memory = gradients_of(agent, images, "memory")
    assert nonzero(memory, "lstm_cell") and nonzero(memory, "memory_head")
    assert not nonzero(memory, "policy_head") and not nonzero(memory, "initial_logits")
    assert not nonzero(memory, "glimpse_encoder")  # The memory reads a stop-gradiented e_t.
    assert not nonzero(memory, "step_classifier")
    classification = gradients_of(agent, images, "classification")
    assert not nonzero(classification, "memory_head")
    assert not nonzero(classification, "lstm_cell")


def test_context_makes_the_first_location_depend_on_the_image(images):
    tf.keras.utils.set_random_seed(1)
    config = CONFIG.replace(context=True)
    contextual = GlimpseAgent.from_glimpse_config(config)
    first = contextual(images, mode="greedy")["policy_logits"][:, 0].numpy()
    assert np.abs(first[0] - first[1]).max() > 1e-4  # Different canvases, different logits.
    with tf.GradientTape() as tape:
        outputs = contextual(images, mode="sample", seed=SEED, training=True)
        loss = tf.reduce_mean(agent_losses(outputs, LABELS, config)["reinforce"])
    variables = contextual.trainable_variables
    gradients = dict(zip([v.path for v in variables], tape.gradient(loss, variables)))
    assert nonzero(gradients, "context_network")  # REINFORCE trains the context.
    # Without a context network the first logits are the same for every canvas.
    plain = GlimpseAgent.from_glimpse_config(CONFIG)
    logits = plain(images, mode="greedy")["policy_logits"][:, 0].numpy()
    np.testing.assert_array_equal(logits[0], logits[1])


def test_memory_trains_encoder_lets_reinforce_reach_the_encoder(images):
    tf.keras.utils.set_random_seed(2)
    config = CONFIG.replace(memory_trains_encoder=True)
    agent = GlimpseAgent.from_glimpse_config(config)
    with tf.GradientTape() as tape:
        outputs = agent(images, mode="sample", seed=SEED, training=True)
        loss = tf.reduce_mean(agent_losses(outputs, LABELS, config)["reinforce"])
    variables = agent.trainable_variables
    gradients = dict(zip([v.path for v in variables], tape.gradient(loss, variables)))
    assert nonzero(gradients, "glimpse_encoder")
    assert not nonzero(gradients, "step_classifier")  # The classifier never serves the policy.


def test_policy_ranking_picks_the_distributions_argmax_within_the_logits_range():
    from tf_glimpse.model.layers import LocationPolicy

    policy = LocationPolicy(9, learned_first=False, mask_visited=True)
    hidden = tf.random.stateless_normal([64, 5], seed=[1, 2])
    policy(hidden, step=1)
    # Ties too: a kernel of zeros gives every cell the bias' logit.
    visited = tf.cast(tf.random.stateless_uniform([64, 9], seed=[3, 4]) < 0.5, tf.float32)
    visited = tf.concat([visited[:, :8], tf.zeros([64, 1])], axis=1)  # One cell always free.
    for kernel in (policy.head.kernel.numpy(), np.zeros_like(policy.head.kernel.numpy())):
        policy.head.kernel.assign(kernel)
        distribution = policy.logits(hidden, 1, visited).numpy()
        ranking = policy.ranking(hidden, 1, visited).numpy()
        raw = policy.raw_logits(hidden, 1).numpy()
        np.testing.assert_array_equal(np.argmax(ranking, -1), np.argmax(distribution, -1))
        assert np.all(distribution[visited.numpy() > 0] == -1e9)
        # The ranking stays within the raw logits' range (int8 keeps its resolution).
        assert ranking.min() >= raw.min() - 1.0 and ranking.max() <= raw.max()
        greedy = policy(hidden, step=1, visited=visited, mode="greedy")["action"].numpy()
        np.testing.assert_array_equal(greedy, np.argmax(distribution, -1))


@pytest.mark.parametrize("detail", [1, 2])
def test_saliency_map_is_the_same_detector_at_every_cell_and_reinforce_trains_it(detail):
    """Shifting the canvas by one stride shifts the saliency logits by one cell (away from
    the zero-padded border), also when the map reads the canvas at `detail` times the
    cells' resolution; the map adds to every step's logits and only REINFORCE, through
    them, trains it."""
    from tf_glimpse.model.layers import SaliencyMap

    config = GlimpseConfig(img_size=64, clutter_count=0, patch_size=8, stride=4,
                           saliency=True, saliency_detail=detail)
    saliency = SaliencyMap(config.img_size, config.patch_size, config.stride, detail=detail)
    saliency(tf.zeros([1, 64, 64, 1]))
    for weight in saliency.weights:  # The last convolution starts at zero: give it values.
        weight.assign(tf.random.stateless_normal(weight.shape, seed=[7, 8]))
    canvas = np.zeros([1, 64, 64, 1], np.float32)
    canvas[0, 20:34, 18:30] = 1.0
    moved = np.roll(canvas, (4, 8), axis=(1, 2))  # one cell down, two to the right
    n = config.grid.size
    before = saliency(canvas).numpy().reshape(n, n)
    after = saliency(moved).numpy().reshape(n, n)
    np.testing.assert_allclose(after[4:-3, 5:-3], before[3:-4, 3:-5], atol=1e-5)
    assert np.ptp(before) > 1.0  # A map with structure, not a constant.

    small = CONFIG.replace(context=True, saliency=True, saliency_detail=detail)
    agent = GlimpseAgent.from_glimpse_config(small)
    for weight in agent.saliency.weights:
        weight.assign(tf.random.stateless_normal(weight.shape, seed=[9, 10]))
    outputs = agent(images_for(small), mode="greedy")
    map_logits = agent.saliency_logits(images_for(small)).numpy()
    without = agent.policy.raw_logits(agent.initial_state(images_for(small))[0], 0).numpy()
    np.testing.assert_allclose(outputs["policy_logits"][:, 0].numpy(), without + map_logits,
                               rtol=1e-5, atol=1e-4)
    reinforce, classification = loss_gradients(agent, small, "reinforce", "classification")
    assert nonzero(reinforce, "saliency_map") and not nonzero(classification, "saliency_map")


def test_local_moves_score_each_move_alike_from_every_cell_and_reinforce_trains_them():
    """The move head's scores land on the cells that each move reaches from the previous
    cell, the same from every cell (zero out of reach); it starts at zero (the policy
    unchanged) and REINFORCE, not the classifier, trains it."""
    from tf_glimpse.model.layers import LocationPolicy

    config = CONFIG.replace(local_moves=1)  # 28 - 8 = 20 = 4 * 5: a 6 x 6 grid
    n = config.grid.size
    policy = LocationPolicy(config.num_actions, move_radius=1)
    hidden = tf.random.stateless_normal([2, 5], seed=[1, 1])
    policy.build(hidden.shape)
    np.testing.assert_array_equal(policy.move_logits(hidden, tf.constant([7, 7])).numpy(), 0)
    for weight in policy.move_head.weights:
        weight.assign(tf.random.stateless_normal(weight.shape, seed=[2, 3]))
    scores = policy.move_head(hidden).numpy().reshape(2, 3, 3)  # [B, d_row, d_col]
    for previous in (7, 14, 0, n * n - 1):  # Inside, and at two corners of the grid.
        placed = policy.move_logits(hidden, tf.constant([previous] * 2)).numpy()
        placed = placed.reshape(2, n, n)
        row, col = divmod(previous, n)
        expected = np.zeros_like(placed)
        for d_row in (-1, 0, 1):
            for d_col in (-1, 0, 1):
                if 0 <= row + d_row < n and 0 <= col + d_col < n:
                    expected[:, row + d_row, col + d_col] = scores[:, d_row + 1, d_col + 1]
        np.testing.assert_allclose(placed, expected, rtol=1e-6, err_msg=f"from cell {previous}")

    tf.keras.utils.set_random_seed(0)
    agent = GlimpseAgent.from_glimpse_config(config)
    reinforce, classification = loss_gradients(agent, config, "reinforce", "classification")
    assert nonzero(reinforce, "move_head") and not nonzero(classification, "move_head")


def test_local_moves_must_stay_within_the_grid():
    from tf_glimpse.errors import ConfigError

    with pytest.raises(ConfigError, match=r"local_moves=6 reaches past the 6 x 6 grid; "
                                          r"valid range: 0\.\.5"):
        CONFIG.replace(local_moves=6)


def loss_gradients(agent: GlimpseAgent, config: GlimpseConfig, *terms: str) -> list[dict]:
    """For each loss term, its gradients by variable path, from one sampled episode on
    `images_for(config)` (`gradients_of` for agents of other configurations)."""
    with tf.GradientTape(persistent=True) as tape:
        outputs = agent(images_for(config), mode="sample", seed=SEED, training=True)
        losses = agent_losses(outputs, LABELS, config)
        means = [tf.reduce_mean(losses[term]) for term in terms]
    variables = agent.trainable_variables
    names = [v.path for v in variables]
    return [dict(zip(names, tape.gradient(mean, variables))) for mean in means]


def images_for(config: GlimpseConfig) -> tf.Tensor:
    """Six fixed random canvases of `config`'s size."""
    return tf.random.stateless_uniform([6, config.img_size, config.img_size, 1], seed=[1, 2])


def test_saliency_needs_the_context_network():
    from tf_glimpse.errors import ConfigError

    with pytest.raises(ConfigError, match="saliency=True needs context=True"):
        CONFIG.replace(saliency=True, context=False)


@pytest.mark.parametrize("encoder, saliency, local_moves",
                         [("mlp", False, 0), ("cnn", False, 0), ("mlp", True, 2)])
def test_a_checkpoint_restores_every_weight_of_the_agent(tmp_path, encoder, saliency,
                                                         local_moves):
    """load_agent (report, export, the best agent) gets back every trained weight: Keras 3
    lists of layers were not in tf.train.Checkpoint's graph, so the cnn encoder's
    convolutions came back as a fresh initialisation."""
    from tf_glimpse.training.runs import load_agent, prepare_run_dir

    config = GlimpseConfig(**{**CONFIG.to_dict(), "encoder": encoder, "context": True,
                              "saliency": saliency, "local_moves": local_moves})
    tf.keras.utils.set_random_seed(0)
    trained = GlimpseAgent.from_glimpse_config(config)
    trained(tf.zeros([2, 28, 28, 1]), mode="greedy")
    for weight in trained.weights:  # Not the initial values: zero biases would pass.
        weight.assign(tf.random.stateless_normal(weight.shape, seed=[5, 6], dtype=weight.dtype))
    prepare_run_dir(tmp_path, config, resume=False)
    tf.train.CheckpointManager(tf.train.Checkpoint(model=trained), tmp_path / "best",
                               max_to_keep=1).save()
    tf.keras.utils.set_random_seed(1)
    _, restored = load_agent(tmp_path)
    assert len(restored.weights) == len(trained.weights)
    for saved, loaded in zip(trained.weights, restored.weights):
        np.testing.assert_array_equal(loaded.numpy(), saved.numpy(), err_msg=saved.path)


def test_encoder_auto_takes_the_convolutions_for_small_glimpses_only():
    from tf_glimpse.config import CNN_MAX_PATCH

    small = CONFIG.replace(encoder="auto", patch_size=CNN_MAX_PATCH)
    large = CONFIG.replace(encoder="auto", patch_size=16)
    assert (small.patch_size, small.encoder_kind) == (12, "cnn")
    assert large.encoder_kind == "mlp"
    assert CONFIG.replace(encoder="mlp").encoder_kind == "mlp"
    assert large.replace(encoder="cnn").encoder_kind == "cnn"
    agent = GlimpseAgent.from_glimpse_config(small)
    assert agent.encoder.kind == "cnn" and agent.get_config()["config"]["encoder"] == "cnn"


def test_a_run_keeps_the_encoder_it_trained_when_the_auto_rule_changes(tmp_path, monkeypatch):
    """config.json records the encoder "auto" built, so a saved run still loads (and
    resumes with that encoder named) after `CNN_MAX_PATCH` changes: runs that recorded
    "auto" with 9- to 12-pixel glimpses were MLPs that the 12-pixel rule then rebuilt
    as convolutions."""
    import tf_glimpse.config
    from tf_glimpse.training.runs import load_agent, load_config, prepare_run_dir

    config = CONFIG.replace(encoder="auto", patch_size=12)
    trained = GlimpseAgent.from_glimpse_config(config)
    trained(tf.zeros([2, 28, 28, 1]), mode="greedy")
    prepare_run_dir(tmp_path, config, resume=False)
    tf.train.CheckpointManager(tf.train.Checkpoint(model=trained), tmp_path / "best",
                               max_to_keep=1).save()
    assert load_config(tmp_path).encoder == "cnn"
    monkeypatch.setattr(tf_glimpse.config, "CNN_MAX_PATCH", 8)  # 12 x 12 -> mlp now.
    assert config.encoder_kind == "mlp"
    _, restored = load_agent(tmp_path)
    assert restored.encoder.kind == "cnn"
    for saved, loaded in zip(trained.weights, restored.weights):
        np.testing.assert_array_equal(loaded.numpy(), saved.numpy(), err_msg=saved.path)
    prepare_run_dir(tmp_path, config.replace(encoder="cnn"), resume=True)  # Resumable.
