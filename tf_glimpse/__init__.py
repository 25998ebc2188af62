"""tf_glimpse: a reinforcement-learning agent that learns where to look.

The Python API, in the order of a run (see the README's "Python API"):

    from tf_glimpse import GlimpseConfig, Trainer, load_agent, build_report
    from export import export_run

    config = GlimpseConfig(img_size=60, clutter_count=4, patch_size=12, minutes=5)
    metrics = Trainer(config, "runs/demo").fit()
    config, agent = load_agent("runs/demo")
    report = build_report("runs/demo")
    info = export_run("runs/demo", "exports/demo")

Importing the package is cheap (no TensorFlow) unless Keras is loaded already: `Trainer`,
`load_agent` and `build_report` import it on first use.  A run's best agent is also
saved in Keras' own format: `import keras, tf_glimpse;
keras.models.load_model("RUN/agent.keras")`.  The subpackages:

* `tf_glimpse.config`   - `GlimpseConfig`, the one configuration of a run (`cli`: train.py)
* `tf_glimpse.data`     - MNIST / Fashion-MNIST / TFDS and the canvases, in `tf.data`
* `tf_glimpse.model`    - the grid, the sensor, the agent's layers and `GlimpseAgent`
* `tf_glimpse.training` - rewards, schedules, the step, `Trainer` and the run directory
* `tf_glimpse.analysis` - evaluation, metrics, the policy report and its pictures
"""

import sys

from tf_glimpse.config import ConfigError, GlimpseConfig

__all__ = ["ConfigError", "GlimpseConfig", "GlimpseAgent", "Trainer", "load_agent",
           "load_keras_agent", "build_report"]
__version__ = "0.1.0"

_LAZY = {"Trainer": "tf_glimpse.training.trainer", "load_agent": "tf_glimpse.training.runs",
         "load_keras_agent": "tf_glimpse.training.runs",
         "build_report": "tf_glimpse.analysis.report", "GlimpseAgent": "tf_glimpse.model.agent"}

if "keras" in sys.modules:
    # Keras, and with it TensorFlow, is loaded already: register the agent's layers
    # (keras.saving.register_keras_serializable, package "tf_glimpse") now, so that
    # `import keras, tf_glimpse; keras.models.load_model("RUN/agent.keras")` works.
    # Without Keras, `import tf_glimpse.model.agent` (or any use of the API) does it.
    import tf_glimpse.model.agent  # noqa: F401


def __getattr__(name: str):
    """`Trainer`, `load_agent`, `build_report`, ..., imported (with TensorFlow, quietly,
    see `tf_glimpse.quiet`) on first use."""
    if name in _LAZY:
        import importlib

        from tf_glimpse.quiet import quiet_tensorflow

        quiet_tensorflow()
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tf_glimpse' has no attribute {name!r}")
