"""Is bfloat16 worth it on this CPU?  XLA-compiled matrix products, float32 against bfloat16.

    python benchmarks/bfloat16_matmul.py
    python benchmarks/bfloat16_matmul.py --batch_size 128 --width 256 --layers 12

The agent's step is a chain of small matrix products (batch 128, widths 128 to 512:
the LSTM's [128, 256] x [256, 512] is the largest).  This times such a chain, forward
and backward, under `tf.function(jit_compile=True)`, once with the products in
float32 and once with their inputs cast to bfloat16 (float32 weights and tanh, as a
Keras ``mixed_bfloat16`` policy would do).  Median of `--calls` calls after a
warm-up.  If bfloat16 is not faster here, a mixed-precision agent cannot be either.
The LAST line is JSON: {"float32_ms": ..., "bfloat16_ms": ..., "bfloat16_speedup": ...,
"float32_gflop_per_s": ...}, the last being the rate of the float32 products (see
`chain_flops`): what the machine's matrix products reach at best at this shape.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if not __package__:  # `python benchmarks/NAME.py`: benchmarks/ is not an installed package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.inference_latency import median_ms
from tf_glimpse.quiet import quiet_tensorflow


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags: the shape of the chain and how long to time it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--width", type=int, default=256,
                        help="input width; each product maps it to 2 x width")
    parser.add_argument("--layers", type=int, default=12, help="chained products")
    parser.add_argument("--calls", type=int, default=100, help="timed calls (median)")
    args = parser.parse_args(argv)
    for name in ("batch_size", "width", "layers", "calls"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}={getattr(args, name)} is out of range; valid range: >= 1")
    return args


def chain_flops(args: argparse.Namespace) -> int:
    """FLOPs of one forward + backward pass: per product 2*B*W*2W forward, twice that back."""
    return 3 * args.layers * 2 * args.batch_size * args.width * 2 * args.width


def chain_ms(dtype_name: str, args: argparse.Namespace) -> float:
    """Median ms of one forward + backward pass of the chain with products in `dtype_name`."""
    import tensorflow as tf

    dtype = tf.as_dtype(dtype_name)
    inputs = tf.random.stateless_normal([args.batch_size, args.width], [0, 1])
    weights = tf.Variable(tf.random.stateless_normal([args.width, 2 * args.width], [0, 2])
                          / args.width ** 0.5)

    @tf.function(jit_compile=True)
    def forward_backward() -> tf.Tensor:
        with tf.GradientTape() as tape:
            hidden = inputs
            for _ in range(args.layers):
                product = tf.matmul(tf.cast(hidden, dtype), tf.cast(weights, dtype))
                hidden = tf.tanh(tf.cast(product[:, :args.width], tf.float32))
            loss = tf.reduce_sum(hidden)
        return tape.gradient(loss, weights)

    return median_ms(lambda: forward_backward().numpy(), args.calls, warmup=3)


def main(argv: list[str] | None = None) -> None:
    """Time both precisions; print a table and the JSON line."""
    args = parse_args(argv)
    quiet_tensorflow()
    float32, bfloat16 = chain_ms("float32", args), chain_ms("bfloat16", args)
    print(f"{args.layers} chained [{args.batch_size}, {args.width}] x [{args.width}, "
          f"{2 * args.width}] products, forward + backward, XLA, median of {args.calls}")
    print(f"{'precision':<12}{'ms':>10}")
    print(f"{'float32':<12}{float32:>10.3f}\n{'bfloat16':<12}{bfloat16:>10.3f}")
    rate = chain_flops(args) / float32 / 1e6  # FLOPs per ms -> GFLOP/s.
    print(f"float32 products: {rate:.1f} GFLOP/s")
    print(json.dumps({"float32_ms": round(float32, 4), "bfloat16_ms": round(bfloat16, 4),
                      "bfloat16_speedup": round(float32 / bfloat16, 3),
                      "float32_gflop_per_s": round(rate, 2)}))


if __name__ == "__main__":
    main()
