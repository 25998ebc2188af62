"""tf_glimpse: a reinforcement-learning agent that learns where to look.

Importing the package is cheap (no TensorFlow); import the submodules you need:

* `tf_glimpse.config`   - `GlimpseConfig`, the one configuration of a run
* `tf_glimpse.grid`     - the action grid (action id <-> patch centre)
* `tf_glimpse.data`     - MNIST / Fashion-MNIST and the canvases, in `tf.data`
* `tf_glimpse.sensor`   - `GlimpseSensor`, the glimpse Keras layer
* `tf_glimpse.agent`    - `GlimpseAgent`, vision + memory + policy + classifier
* `tf_glimpse.rewards`  - rewards, returns and the REINFORCE losses
* `tf_glimpse.training` - the training loop (`python train.py`)
"""

from tf_glimpse.config import ConfigError, GlimpseConfig

__all__ = ["ConfigError", "GlimpseConfig"]
__version__ = "0.1.0"
