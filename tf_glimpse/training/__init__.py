"""Training: rewards and losses, schedules, the compiled step, the trainer and its run.

* `rewards`   - information-gain step rewards, final +-R, returns, the loss terms
* `schedules` - learning rate and entropy bonus over the epoch or time budget
* `step`      - `TrainStep`: the `tf.function` + `GradientTape` step under a strategy
* `trainer`   - `Trainer`: epochs, validation, checkpoints, the final test
* `runs`      - the run directory: config, history, checkpoints (`EpochCheckpoints`),
                resuming, reading a run back (`load_agent`, `load_keras_agent`)
* `summaries` - TensorBoard scalars, HParams and glimpse images

`from tf_glimpse.training import Trainer` imports TensorFlow on first use only.
"""


def __getattr__(name: str):
    """`Trainer`, imported with its module (and TensorFlow) on first use."""
    if name == "Trainer":
        from tf_glimpse.training.trainer import Trainer

        return Trainer
    raise AttributeError(f"module 'tf_glimpse.training' has no attribute {name!r}")
