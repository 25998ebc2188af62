"""Image dependence: a toy task that no fixed scan can solve.

Every 28x28 image is a 4 x 4 grid of 7 x 7 cells.  The class (0 or 1: a horizontal
or a vertical bar) shows in ONE of eight candidate cells, and which one changes
from image to image.  The other seven candidates hold bars of random orientation,
identical to the class patterns, so a glimpse at a wrong candidate says nothing.
Every other cell holds the same cue: a single bright pixel whose position in the
cell names the informative candidate.  So whatever non-candidate cell the first
glimpse lands on, it sees the cue.

With two glimpses a fixed scan sees the informative cell in at most 2 of 8 images
(accuracy <= 2/8 + 6/8 * 1/2 = 62.5%; cue + one candidate: 56%).  A policy that
reads the cue first and then goes where it points reaches 100%.  The first glimpse
can only learn from the second: the memory must carry the cue to the policy.
"""

import numpy as np

from tf_glimpse.config import GlimpseConfig
from tf_glimpse.data.sources import Splits
from tf_glimpse.training.trainer import Trainer

CANDIDATES = (5, 6, 7, 9, 10, 11, 13, 14)  # Cells of the 4 x 4 grid, row-major.
CUE_CELLS = tuple(cell for cell in range(16) if cell not in CANDIDATES)
CELL = 7


def bar(image: np.ndarray, cell: int, vertical: bool) -> None:
    """Draw a 7-pixel bar through the middle of `cell`."""
    row, col = divmod(cell, 4)
    if vertical:
        image[row * CELL:row * CELL + CELL, col * CELL + 3] = 255
    else:
        image[row * CELL + 3, col * CELL:col * CELL + CELL] = 255


def cue_toy_splits(count: int, seed: int) -> tuple[Splits, np.ndarray]:
    """(Splits of the toy task, the informative cell of every validation image)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=count).astype(np.int32)
    targets = rng.integers(0, len(CANDIDATES), size=count)
    images = np.zeros((count, 28, 28), np.uint8)
    for i in range(count):
        for index, cell in enumerate(CANDIDATES):
            vertical = bool(labels[i]) if index == targets[i] else bool(rng.integers(0, 2))
            bar(images[i], cell, vertical)
        # The cue: one pixel at (1 + 3 * (t // 4), 2 * (t % 4)) of every cue cell.
        for cell in CUE_CELLS:
            row, col = divmod(cell, 4)
            images[i, row * CELL + 1 + 3 * (targets[i] // 4),
                   col * CELL + 2 * (targets[i] % 4)] = 255
    half = count // 2
    splits = Splits(images[:half], labels[:half], images[half:], labels[half:],
                    images[half:], labels[half:], 10, "cue toy")
    return splits, np.asarray(CANDIDATES)[targets[half:]]


def best_fixed_scan_accuracy(steps: int) -> float:
    """The accuracy bound of any fixed scan: it sees the informative cell with probability
    at most steps / 8 and guesses (1/2) otherwise."""
    seen = min(steps, len(CANDIDATES)) / len(CANDIDATES)
    return seen + (1 - seen) / 2


def train_on_the_cue(tmp_path, seed: int) -> tuple[float, float, int]:
    """(share of episodes that look at the informative cell, accuracy, distinct second
    glimpses) of the greedy policy on 1,024 validation images, after 30 epochs."""
    # One scale and a 7-pixel patch: a glimpse sees exactly one cell.  The cue says
    # nothing about the class, so only REINFORCE can teach the encoder to keep it:
    # memory_trains_encoder (measured: without it the policy settles on a fixed scan
    # of two candidates, 0.26 of episodes see the informative cell).  The MLP encoder: the
    # margins below were measured with it (`--encoder auto` would pick the convolutions).
    config = GlimpseConfig(img_size=28, clutter_count=0, patch_size=7, stride=7, steps=2,
                           encoder="mlp",
                           scales=1, batch_size=64, epochs=30, lr=3e-3, val_size=0,
                           entropy_weight=0.1, entropy_final=0.0, context=False,
                           memory_trains_encoder=True, jit_compile=True, seed=seed,
                           embedding_units=64, memory_units=64, classifier_units=64,
                           glimpse_units=64, location_units=32, attention_heads=2)
    splits, targets = cue_toy_splits(8192, 0)
    trainer = Trainer(config, tmp_path / f"cue{seed}", splits=splits, verbose=0)
    trainer.fit()
    images = splits.val_images[:1024, :, :, None].astype(np.float32) / 255.0
    outputs = trainer.model(images, mode="greedy")
    actions = outputs["actions"].numpy()
    looked = float(np.mean(np.any(actions == targets[:1024, None], axis=1)))
    predicted = np.argmax(outputs["step_logits"][:, -1].numpy(), axis=-1)
    accuracy = float(np.mean(predicted == splits.val_labels[:1024]))
    return looked, accuracy, len(np.unique(actions[:, 1]))


def test_image_dependent_policy_follows_the_cue(tmp_path):
    fixed_looked, fixed_accuracy = 2 / len(CANDIDATES), best_fixed_scan_accuracy(2)
    assert (fixed_looked, fixed_accuracy) == (0.25, 0.625)
    # Measured with seeds 0-5 (30 epochs, one CPU): five trajectories follow the cue on
    # every image (looked 1.0, accuracy 1.0, all 8 candidates as second glimpse); seed 1
    # learns it for part of the cue positions only (looked 0.649, accuracy 0.826, 5
    # second cells; 0.880 / 0.939 / 7 after 60 epochs).  Which kind a seed gives depends
    # on the CPU's kernels, so: EVERY seed trained must be far beyond any fixed scan (the
    # task's own bound, with margins of 0.40 and 0.20 over the worst measured), and the
    # first trajectory to reach the full bar (0.9 / 0.9 / 8) passes; a fixed scan fails
    # both.  Usually one seed, 32 s; at worst three.
    results = []
    for seed in (0, 1, 2):
        looked, accuracy, second_cells = train_on_the_cue(tmp_path, seed)
        results.append((seed, looked, accuracy, second_cells))
        assert looked >= 2 * fixed_looked, results  # 0.5; measured >= 0.649
        assert accuracy >= fixed_accuracy + 0.125, results  # 0.75; measured >= 0.826
        assert second_cells >= 4, results  # A fixed scan has 1; measured >= 5.
        if looked >= 0.9 and accuracy >= 0.9 and second_cells == len(CANDIDATES):
            return
    raise AssertionError(f"no seed followed the cue on 90% of the images: {results}")
