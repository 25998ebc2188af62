"""FLOPs and pixels per image, counted analytically from layer sizes.

Convention (the same for the glimpse agent and the CNN baseline, so their ratio
is fair): FLOPs = 2 x the multiply-accumulates (MACs) of every matrix product and
convolution of one forward pass on one image.  Bias adds, activations, gate
arithmetic, softmax, layer norm, pooling and dropout are not counted; for these
models they are O(layer width) per step, under 2% of the total.

Agent (one greedy episode, T steps, as `GlimpseAgent.call` computes it; k scales,
P patch, I canvas, A = N*N actions, G/L/D/M/U widths of glimpse, location,
embedding, memory and classifier, C = 10 classes):

* sensor, per step: the ``matmul`` backend computes ``Wy @ image @ Wx^T`` per
  scale with dense [P, I] interpolation matrices, P*I*I + P*P*I MACs per scale
  (most of them multiply zeros); ``window`` reads the L x L window of scale j
  (L = P * 2^j, plus one for odd P); for even P it average-pools it, L*L adds
  (counted, one FLOP each: the sensor's whole work), for odd P it computes
  ``W @ window @ W^T`` with a [P, L] matrix, P*L*L + P*P*L MACs; independent of I;
  ``crop_and_resize`` reads the window of scale j at full resolution, (P * 2^j)^2
  bilinear samples of about 4 MACs each, then averages it down to P x P (pooling
  not counted);
* encoder, per step: "what" k*P*P*G + G*D (``cnn``: two 3x3 convolutions first),
  "where" 2*L + L*D;
* memory, per step: LSTM, (D + M) * 4M;
* policy, steps 1..T-1: M*A (step 0 uses the learned initial logits; the
  policy head's output there only provides a shape, and XLA drops it); with a
  context network, every step T*M*A; with ``local_moves`` R, steps 1..T-1 add the
  move head's M*(2R+1)^2 (placing its scores on the grid is indexing, not counted);
* context (``context`` only): the coarse view of c*c = (I // f)^2 values,
  f = max(1, I // P), through c*c*M + M*2M;
* saliency (``saliency`` only): 3x3 convolutions (C -> 16 -> 16 -> 1 channels) on
  the canvas pooled by s / d (d = ``saliency_detail``), log2(d) of them with stride 2
  (for d = 1 all three on the L x L map, L = I // s), once per episode;
* baseline, per step: M*1 (the value head runs in every forward pass);
* classifier: multi-head attention over the T embeddings (Q, K, V and output
  projections 4*T*D*D, scores and weighted sum 2*T*T*D, the full T x T under the
  causal mask), GRU T*(D + U)*3U, logits T*U*C.

The memory's classification head (`memory_head`) serves its training loss only;
a forward pass for a prediction does not need it (XLA drops it), so it is not counted.

Pixels per image: the agent receives T*k*P*P glimpse values (a value of scale
j >= 1 summarises a 2^j x 2^j block of source pixels), plus the context network's
(I // f)^2 coarse values and the saliency map's (I // (s / d))^2; the CNN reads all I*I
pixels.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if not __package__:  # `python benchmarks/NAME.py`: benchmarks/ is not an installed package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))



def dense_flops(inputs: int, units: int) -> int:
    """FLOPs of a dense layer on one input vector: 2 * inputs * units."""
    return 2 * inputs * units


def conv2d_flops(height: int, width: int, kernel: int, in_channels: int,
                 out_channels: int) -> int:
    """FLOPs of a kernel x kernel convolution with an height x width output (any stride)."""
    return 2 * height * width * kernel * kernel * in_channels * out_channels


def lstm_flops(inputs: int, units: int) -> int:
    """FLOPs of one LSTM step: four gates, each reading the input and the hidden state."""
    return 2 * (inputs + units) * 4 * units


def gru_flops(inputs: int, units: int) -> int:
    """FLOPs of one GRU step: three gates, each reading the input and the hidden state."""
    return 2 * (inputs + units) * 3 * units


def attention_flops(steps: int, width: int) -> int:
    """FLOPs of self-attention over `steps` vectors of `width` (heads * key_dim == width).

    Q, K, V and output projections (4 * steps * width^2 MACs) plus the scores
    Q K^T and the weighted sum of V (steps^2 * width MACs each).
    """
    return 2 * (4 * steps * width * width + 2 * steps * steps * width)


def sensor_flops(backend: str, img_size: int, patch_size: int, scales: int) -> int:
    """FLOPs of one glimpse (all scales) with the given sensor backend."""
    if backend == "matmul":
        return 2 * scales * (patch_size * img_size * img_size + patch_size * patch_size * img_size)
    if backend == "crop_and_resize":
        return 2 * 4 * sum((patch_size * 2 ** j) ** 2 for j in range(scales))
    if backend == "window":
        if patch_size % 2 == 0:  # An average pooling of each L x L window: one add a pixel.
            return sum((patch_size * 2 ** j) ** 2 for j in range(scales))
        # [P, L] @ window [L, L] @ [L, P], L = P * 2^j (+1 at j > 0).
        lengths = [patch_size * 2 ** j + (j > 0) for j in range(scales)]
        return 2 * sum(patch_size * n * n + patch_size * patch_size * n for n in lengths)
    raise ValueError(f"sensor backend={backend!r}; valid values: matmul, crop_and_resize, "
                     f"window")


def agent_flops(config) -> dict[str, int]:
    """FLOPs of one greedy episode per image, by part, and their ``total``.

    `config` is a `GlimpseConfig` (only its fields and `num_actions` are read).
    """
    t, k, p = config.steps, config.scales, config.patch_size
    g, loc, d = config.glimpse_units, config.location_units, config.embedding_units
    m, u, c = config.memory_units, config.classifier_units, config.num_classes
    planes = k * config.channels  # the encoder's input channels: every scale's colours
    if config.encoder_kind == "cnn":
        what = (conv2d_flops(p, p, 3, planes, 16) + conv2d_flops(p, p, 3, 16, 32)
                + dense_flops(32 * p * p, g))
    else:
        what = dense_flops(planes * p * p, g)
    parts = {
        "sensor": t * config.channels * sensor_flops(config.sensor_backend, config.img_size, p,
                                                     k),
        "encoder": t * (what + dense_flops(g, d) + dense_flops(2, loc) + dense_flops(loc, d)),
        "memory": t * lstm_flops(d, m),
        "policy": ((t if config.context else t - 1) * dense_flops(m, config.num_actions)
                   + ((t - 1) * dense_flops(m, (2 * config.local_moves + 1) ** 2)
                      if config.local_moves else 0)),
        "baseline": t * dense_flops(m, 1),
        "classifier": (attention_flops(t, d) + t * gru_flops(d, u) + t * dense_flops(u, c)),
        "context": (dense_flops(config.channels * context_values(config), m)
                    + dense_flops(m, 2 * m)
                    if config.context else 0),
        "saliency": saliency_flops(config) if config.saliency else 0,
    }
    parts["total"] = sum(parts.values())
    return parts


def cnn_flops(layers: list[dict[str, Any]], img_size: int, channels: int = 1) -> int:
    """FLOPs of the CNN described by `layers` (see `benchmarks.cnn_baseline.cnn_layers`).

    Layer kinds: ``conv`` (k x k, "same" padding, ``stride`` s (default 1): output
    size = ceil(input size / s)), ``pool`` and ``avgpool`` (max or average pooling by
    ``factor``, floor; no FLOPs), ``global_pool`` (max over the map; no FLOPs),
    ``dropout`` (no FLOPs), ``flatten``, ``dense``.
    """
    size, features, flops = img_size, None, 0
    for layer in layers:
        kind = layer["kind"]
        if kind == "conv":
            size = -(-size // layer.get("stride", 1))
            flops += conv2d_flops(size, size, layer["kernel"], channels, layer["filters"])
            channels = layer["filters"]
        elif kind in ("pool", "avgpool"):
            size //= layer["factor"]
        elif kind == "global_pool":
            features = channels
        elif kind == "flatten":
            features = size * size * channels
        elif kind == "dense":
            flops += dense_flops(features, layer["units"])
            features = layer["units"]
        elif kind != "dropout":
            raise ValueError(f"unknown layer kind {kind!r}")
    return flops


def keras_flops(model) -> int:
    """FLOPs of a built Keras model's Conv2D and Dense layers, from their real shapes.

    An independent check of `cnn_flops`: it reads kernel and output shapes off the
    built layers instead of recomputing them from the layer list.
    """
    flops = 0
    for layer in model.layers:
        name = type(layer).__name__
        if name == "Conv2D":
            kh, kw, cin, cout = layer.kernel.shape
            _, height, width, _ = layer.output.shape
            flops += 2 * height * width * kh * kw * cin * cout
        elif name == "Dense":
            inputs, units = layer.kernel.shape
            positions = 1
            for dim in layer.output.shape[1:-1]:
                positions *= dim
            flops += 2 * positions * inputs * units
    return int(flops)


def saliency_flops(config) -> int:
    """FLOPs of `SaliencyMap`: its 3x3 convolutions of ``saliency_units`` channels on the
    canvas pooled by s / d (d = ``saliency_detail``), log2(d) of them with stride 2 (one on
    the L x L map when d = 1)."""
    units, detail = config.saliency_units, config.saliency_detail
    size = saliency_side(config)
    flops = conv2d_flops(size, size, 3, config.channels, units)
    for _ in range(detail.bit_length() - 1):
        size = -(-size // 2)  # "same" padding with stride 2
        flops += conv2d_flops(size, size, 3, units, units)
    if detail == 1:
        flops += conv2d_flops(size, size, 3, units, units)
    return flops + conv2d_flops(size, size, 3, units, 1)


def saliency_side(config) -> int:
    """Side of the saliency map's input, the canvas pooled by s / d: I // (s / d)."""
    return config.img_size // (config.stride // config.saliency_detail)


def saliency_values(config) -> int:
    """Values of the saliency map's input, (I // (s / d))^2 (d = ``saliency_detail``)."""
    return saliency_side(config) ** 2


def context_values(config) -> int:
    """Values of the context network's coarse view, (I // f)^2 with f = max(1, I // P)."""
    factor = max(1, config.img_size // config.patch_size)
    return (config.img_size // factor) ** 2


def agent_pixels(config) -> int:
    """Values one episode gives the agent: T * k * P * P * C glimpse values (+ the context's)."""
    context = context_values(config) if config.context else 0
    saliency = saliency_values(config) if config.saliency else 0
    return config.channels * (config.steps * config.scales * config.patch_size ** 2 + context
                              + saliency)


def canvas_pixels(config) -> int:
    """Values of one canvas, all of which a full-image CNN reads: I * I * C."""
    return config.channels * config.img_size ** 2


def main(argv: list[str] | None = None) -> int:
    """`python benchmarks/flops.py --setting NAME [overrides]`: FLOPs and pixels per image."""
    import argparse
    import json

    from benchmarks.cnn_baseline import cnn_layers
    from benchmarks.settings import SETTINGS, get_setting
    from tf_glimpse.cli import add_config_flags, config_fields
    from tf_glimpse.config import ConfigError

    parser = argparse.ArgumentParser(
        prog="flops.py", description="FLOPs per image of the glimpse agent (by part) and of the "
        "full-image CNN baseline, counted analytically; the last line is JSON.")
    parser.add_argument("--setting", required=True, choices=list(SETTINGS))
    add_config_flags(parser, given_only=True)
    args = parser.parse_args(argv)
    try:
        config = get_setting(args.setting).config(**config_fields(args))
    except ConfigError as error:
        parser.error(str(error))
    parts = agent_flops(config)
    cnn = cnn_flops(cnn_layers(config.img_size, config.num_classes), config.img_size,
                    config.channels)
    for name, value in parts.items():
        print(f"{name:<11} {value:>14,}")
    print(f"{'CNN':<11} {cnn:>14,}")
    print(json.dumps({"setting": args.setting, "flops_per_image": parts["total"],
                      "flops_breakdown": parts, "cnn_flops_per_image": cnn,
                      "pixels_per_image": agent_pixels(config),
                      "cnn_pixels_per_image": canvas_pixels(config)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
