"""Shared test fixtures: quiet TensorFlow, the data directory, small configurations."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def data_dir() -> str:
    """The MNIST directory from TF_GLIMPSE_DATA_DIR; tests that need real data skip without it."""
    path = os.environ.get("TF_GLIMPSE_DATA_DIR")
    if not path or not os.path.isdir(path):
        pytest.skip("TF_GLIMPSE_DATA_DIR is not set to the MNIST IDX directory")
    return path
