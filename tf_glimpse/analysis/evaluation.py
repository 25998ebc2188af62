"""One evaluation path: play a policy on a data set's canvases, then summarise what it did.

`play(model, dataset, policy, seed)` -> `Episodes` (numpy arrays, one row per canvas)
and `summarize(episodes)` -> accuracy, hit rate, entropy and policy diversity, overall
and per step.  Training (validation after every epoch, test at the end), the policy
report, the benchmarks and the CNN baseline all evaluate through these two functions.

Policies: "greedy" (argmax), "sample" (the learned distribution), "random" (uniform
cells) or a function batch -> actions [B, T] (played with mode "given").  A model that
is not a glimpse agent (the full-image CNN baseline: images -> class logits) is
played as one step that sees the whole canvas, with policy "full_image".

One seed convention: the episodes of batch b, sample m use the stateless seed
``fold_in(fold_in([seed, stream], b), m)``, where the stream depends on the policy
only ("random" and "sample" differ), so a result depends on the seed, the policy and
the canvases, never on what was evaluated before.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import tensorflow as tf

from tf_glimpse.analysis.metrics import glimpse_hits, sequence_diversity, step_correct
from tf_glimpse.model.agent import GlimpseAgent

ActionFn = Callable[[dict], np.ndarray]  # batch -> actions [B, T]
AGENT_POLICIES = ("greedy", "sample", "random")
FULL_IMAGE = "full_image"
# Seed streams: a policy's samples depend on (seed, policy) only.
SEED_STREAMS = {"greedy": 0, "sample": 1, "random": 2, "given": 3, FULL_IMAGE: 0}


@dataclasses.dataclass
class Episodes:
    """What one policy did on n canvases (numpy; T steps, C classes, M samples per canvas)."""

    actions: np.ndarray    # [n, T] int32, of the first sample
    correct: np.ndarray    # [n, T] float32: share of the M samples right after step t
    hits: np.ndarray       # [n, T] float32: share of the M samples whose glimpse t hit the box
    entropies: np.ndarray  # [n, T] the policy's entropy (nats), mean over samples
    probs: np.ndarray      # [n, T, C] class probabilities after each step, mean over samples
    boxes: np.ndarray      # [n, 4] target boxes (top, left, bottom, right)
    labels: np.ndarray     # [n]
    images: np.ndarray     # [k, I, I, C] the first k canvases (k = keep_images)


def constant_policy(actions: np.ndarray) -> ActionFn:
    """A policy that takes the same actions [T] on every canvas (played with mode "given")."""
    actions = np.asarray(actions, np.int32)
    return lambda batch: np.broadcast_to(actions, (len(batch["label"]), len(actions)))


def episode_function(model: Any, jit_compile: bool = False) -> Callable:
    """A compiled (images, labels, boxes, mode, seed, actions) -> dict of one batch's episodes.

    Keys: ``actions`` [B, T], ``probs`` [B, T, C], ``correct`` [B, T], ``hits`` [B, T],
    ``entropies`` [B, T].  Build it once per model and pass it to `play` when
    evaluating often (training, the report), so it is traced and compiled once per
    mode.  Each mode has a `tf.function` of its own, traced at most twice (full batches,
    then any batch size): one function for every mode would be traced once per mode and
    batch shape, and TensorFlow warns about "excessive retracing" past five traces.
    """
    is_agent = isinstance(model, GlimpseAgent)

    def episode(images, labels, boxes, mode, seed, actions):
        if is_agent:
            outputs = model(images, mode=mode, seed=seed, actions=actions)
            probs = tf.nn.softmax(outputs["step_logits"], axis=-1)
            taken, entropies = outputs["actions"], outputs["entropies"]
            hits = glimpse_hits(taken, boxes, model.grid)
        else:  # One step that sees the whole canvas: no glimpses, no policy.
            probs = tf.nn.softmax(model(images, training=False), axis=-1)[:, None]
            taken = tf.zeros([tf.shape(images)[0], 0], tf.int32)
            entropies = hits = tf.zeros([tf.shape(images)[0], 0])
        return {"actions": taken, "probs": probs, "correct": step_correct(probs, labels),
                "hits": hits, "entropies": entropies}

    compiled: dict[str, Callable] = {}

    def by_mode(images, labels, boxes, mode, seed, actions):
        if mode not in compiled:
            compiled[mode] = tf.function(functools.partial(episode, mode=mode),
                                         jit_compile=jit_compile, reduce_retracing=True)
        return compiled[mode](images, labels, boxes, seed=seed, actions=actions)

    return by_mode


def play(model: Any, dataset: Iterable[dict], policy: str | ActionFn = "greedy", seed: int = 0,
         samples: int = 1, limit: int | None = None, keep_images: int = 0,
         progress: Any = None, episode: Callable | None = None) -> Episodes:
    """Play `policy` with `model` on the canvases of `dataset` (batches of image/label/box).

    `samples` M > 1 plays M episodes of every canvas (for "sample": a Monte Carlo
    estimate; the class probabilities are averaged).  Stops after `limit` canvases;
    keeps the first `keep_images` canvases.  `progress` (a Keras Progbar) gets
    ``update(batches done)``; `episode` is a prebuilt `episode_function(model)`.
    """
    mode = _mode(model, policy)
    episode = episode or episode_function(model)
    base = tf.constant([seed, SEED_STREAMS[mode]], tf.int64)
    parts: dict[str, list[np.ndarray]] = {field.name: [] for field in dataclasses.fields(Episodes)}
    count = 0
    for index, batch in enumerate(dataset):
        if limit is not None and count >= limit:
            break
        take = len(batch["label"]) if limit is None else min(len(batch["label"]), limit - count)
        batch = {key: value[:take] for key, value in batch.items()}
        given = tf.constant(policy(batch), tf.int32) if callable(policy) else None
        batch_seed = tf.random.experimental.stateless_fold_in(base, index)
        runs = [episode(batch["image"], batch["label"], batch["box"], mode,
                        tf.random.experimental.stateless_fold_in(batch_seed, sample), given)
                for sample in range(samples)]
        parts["actions"].append(runs[0]["actions"].numpy())
        for key in ("correct", "hits", "entropies", "probs"):
            parts[key].append(np.mean([run[key].numpy() for run in runs], axis=0))
        parts["boxes"].append(np.asarray(batch["box"]))
        parts["labels"].append(np.asarray(batch["label"]))
        if count < keep_images:
            parts["images"].append(np.asarray(batch["image"][:keep_images - count]))
        count += take
        if progress is not None:
            progress.update(index + 1)
    if not count:
        raise ValueError("the dataset holds no canvases")
    return Episodes(**{key: np.concatenate(values) if values else np.zeros((0,))
                       for key, values in parts.items()})


def _mode(model: Any, policy: str | ActionFn) -> str:
    """The agent's `mode` for `policy`; ValueError naming the valid policies."""
    if not isinstance(model, GlimpseAgent):
        if policy != FULL_IMAGE:
            raise ValueError(f"policy={policy!r} for a model without glimpses; valid value: "
                             f"{FULL_IMAGE}")
        return FULL_IMAGE
    if callable(policy):
        return "given"
    if policy not in AGENT_POLICIES:
        raise ValueError(f"policy={policy!r}; valid values: {', '.join(AGENT_POLICIES)} or a "
                         f"function batch -> actions [B, T]")
    return policy


def summarize(episodes: Episodes) -> dict:
    """Accuracy and error (argmax of the final probabilities), accuracy, hit rate and entropy
    per step, the overall hit rate, and the policy's diversity (`metrics.sequence_diversity`).

    A model without glimpses has no hit rate or entropy (None) and no sequences.
    """
    correct = np.argmax(episodes.probs[:, -1], axis=-1) == episodes.labels
    glimpses = episodes.actions.shape[1] > 0
    return {
        **(sequence_diversity(episodes.actions) if glimpses else {}),
        "accuracy": float(np.mean(correct)),
        "error": float(1.0 - np.mean(correct)),
        "accuracy_per_step": [float(a) for a in episodes.correct.mean(axis=0)],
        "hit_rate": float(episodes.hits.mean()) if glimpses else None,
        "hit_rate_per_step": [float(h) for h in episodes.hits.mean(axis=0)],
        "entropy_per_step": [float(e) for e in episodes.entropies.mean(axis=0)],
        "count": int(len(episodes.labels)),
    }


def evaluate(model: Any, dataset: Iterable[dict], policy: str | ActionFn = "greedy",
             seed: int = 0, **options) -> dict:
    """`summarize(play(model, dataset, policy, seed, **options))`."""
    return summarize(play(model, dataset, policy, seed, **options))
