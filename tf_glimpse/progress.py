"""Progress bars that stay readable in log files.

`keras.utils.Progbar(verbose=1)` redraws one line on a terminal and in Jupyter, but
elsewhere (`nohup ... > log`, CI) every update becomes a new line of the log.
`progress_bar` keeps the live bar on a terminal and in a notebook (Keras redraws it
there itself) and prints one summary line per bar otherwise.
"""

from __future__ import annotations

import sys

import keras


def progress_bar(target: int, verbose: int = 1, **kwargs) -> keras.utils.Progbar:
    """A `keras.utils.Progbar`: live on a terminal or in Jupyter, one line at the end in a log."""
    in_notebook = "ipykernel" in sys.modules
    if verbose == 1 and not sys.stdout.isatty() and not in_notebook:
        verbose = 2
    return keras.utils.Progbar(target, verbose=verbose, **kwargs)
