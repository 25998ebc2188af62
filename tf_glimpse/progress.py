"""Progress bars that stay readable in log files.

`keras.utils.Progbar(verbose=1)` redraws one line on a terminal, but outside one
(`nohup ... > log`, CI) every update becomes a new line of the log.  `progress_bar`
keeps the live bar on a terminal and prints one summary line per bar otherwise.
"""

from __future__ import annotations

import sys

import keras


def progress_bar(target: int, verbose: int = 1, **kwargs) -> keras.utils.Progbar:
    """A `keras.utils.Progbar`: live on a terminal, one line at the end in a log file."""
    if verbose == 1 and not sys.stdout.isatty():
        verbose = 2
    return keras.utils.Progbar(target, verbose=verbose, **kwargs)
