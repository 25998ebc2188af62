"""The agent, one Keras layer per box of the paper, and the grid it acts on.

* `grid`   - `ActionGrid`: N = (I - P)/s + 1 positions per axis; action id <-> (row, col)
             <-> patch centre (x, y) in [0, 1]^2
* `sensor` - `GlimpseSensor`: k scales of P x P glimpses (backends matmul, window,
             crop_and_resize)
* `layers` - `GlimpseEncoder`, `StepClassifier`, `ContextNetwork`, `LocationPolicy`
* `agent`  - `GlimpseAgent`: the episode over those layers, and its gradient cuts

Nothing is imported here, so `import tf_glimpse.model.grid` stays free of TensorFlow.
"""
