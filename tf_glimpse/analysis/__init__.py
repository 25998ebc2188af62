"""What a trained agent does: evaluation, metrics, the policy report and its pictures.

* `evaluation` - `play` a policy on a data set and `summarize` it (one evaluation path)
* `metrics`    - hits, per-step correctness, the diversity of glimpse sequences
* `report`     - `python -m tf_glimpse.report RUN`: the learned policy against
                 random and fixed scans
* `plots`      - the report's per-step curves and heat maps
* `visualize`  - trajectory images, heat maps and attention GIFs
"""
