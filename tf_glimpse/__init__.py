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
keras.models.load_model("RUN/agent.keras")`.  The submodules:

* `tf_glimpse.config`   - `GlimpseConfig`, the one configuration of a run
* `tf_glimpse.grid`     - the action grid (action id <-> patch centre)
* `tf_glimpse.data`     - MNIST / Fashion-MNIST and the canvases, in `tf.data`
* `tf_glimpse.sensor`   - `GlimpseSensor`, the glimpse Keras layer
* `tf_glimpse.modules`  - encoder, classifier and context network, one Keras layer each
* `tf_glimpse.agent`    - `GlimpseAgent`, vision + memory + policy + classifier
* `tf_glimpse.rewards`  - rewards, returns and the REINFORCE losses
* `tf_glimpse.training` - the training loop (`python train.py`)
* `tf_glimpse.runs`     - reading a run directory back (`load_agent`)
* `tf_glimpse.report`   - the policy report (`python -m tf_glimpse.report RUN`)
"""

import sys

from tf_glimpse.config import ConfigError, GlimpseConfig

__all__ = ["ConfigError", "GlimpseConfig", "GlimpseAgent", "Trainer", "load_agent",
           "load_keras_agent", "build_report"]
__version__ = "0.1.0"

_LAZY = {"Trainer": "tf_glimpse.training", "load_agent": "tf_glimpse.runs",
         "load_keras_agent": "tf_glimpse.runs", "build_report": "tf_glimpse.report",
         "GlimpseAgent": "tf_glimpse.agent"}

if "keras" in sys.modules:
    # Keras, and with it TensorFlow, is loaded already: register the agent's layers
    # (keras.saving.register_keras_serializable, package "tf_glimpse") now, so that
    # `import keras, tf_glimpse; keras.models.load_model("RUN/agent.keras")` works.
    # Without Keras loaded, `import tf_glimpse.agent` (or any use of the API) does it.
    import tf_glimpse.agent  # noqa: F401


def __getattr__(name: str):
    """`Trainer`, `load_agent`, `build_report`, ..., imported (with TensorFlow, quietly,
    see `tf_glimpse.quiet`) on first use."""
    if name in _LAZY:
        import importlib

        from tf_glimpse.quiet import quiet_tensorflow

        quiet_tensorflow()
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tf_glimpse' has no attribute {name!r}")
