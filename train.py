"""Train a glimpse agent: `python train.py --help` lists every flag.

Seed experiment 1 (64x64 canvases, 4 clutter pieces, 8x8 glimpses):
    python train.py --pretrain True --patch_size 8 --steps 6 --img_size 64 \
        --clutter_count 4 --stride 4
"""

import sys

from tf_glimpse.cli import main

if __name__ == "__main__":
    sys.exit(main())
