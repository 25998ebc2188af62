"""The README's Python API block runs as written (in a temporary directory)."""

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_api_block_runs(tmp_path, data_dir, monkeypatch, capsys):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Python API"):readme.index("## How it works")]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)  # runs/ and exports/ go to the temporary directory.
    monkeypatch.setenv("TF_GLIMPSE_DATA_DIR", data_dir)
    namespace: dict = {}
    exec(compile(block, "README.md (Python API)", "exec"), namespace)  # noqa: S102
    assert 0.0 <= namespace["metrics"]["test_accuracy"] <= 1.0
    assert (tmp_path / "runs" / "api-demo" / "report" / "report.json").exists()
    assert (tmp_path / "exports" / "api-demo" / "glimpse_full.tflite").exists()
    assert namespace["config"].num_classes == 10
    assert os.path.isdir(tmp_path / "exports" / "api-demo" / "saved_model")
    assert capsys.readouterr().out.strip()  # The block prints its results.
