"""Shared test fixtures: quiet TensorFlow, the data directory, small configurations."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def data_dir() -> str:
    """The MNIST directory, found as the command lines find it: $TF_GLIMPSE_DATA_DIR, else
    the project's data/mnist that `bash setup.sh` fills.  Tests that need real data skip
    only when neither holds it, and the reason says how to get it."""
    from tf_glimpse.data.idx import DataError
    from tf_glimpse.data.sources import resolve_data_dir

    try:
        return str(resolve_data_dir("mnist", None))
    except DataError as error:
        pytest.skip(f"MNIST not found (run `bash setup.sh` or `python -m tf_glimpse.data.fetch "
                    f"mnist`, or set TF_GLIMPSE_DATA_DIR): {error}")
