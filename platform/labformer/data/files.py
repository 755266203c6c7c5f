"""Find a dataset's files on disk, download them with a checksum, or say exactly what is missing.

Every family's readers use `locate`: it looks in `<data_dir>/<dataset>/` first, then in
any extra folders (system copies such as `/usr/share/datasets/...`), downloads what is
still missing into `<data_dir>/<dataset>/`, and otherwise raises `MissingDataError`, a
`UserError` whose message lists each file, its URL, every folder searched, and the fix.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from labformer.errors import UserError

CHUNK = 1 << 20
USER_AGENT = "labformer-data/0.1 (+python urllib)"


@dataclass(frozen=True)
class RemoteFile:
    """A file a dataset needs: where it lives inside the dataset folder, and where to get it."""

    name: str  # relative path inside <data_dir>/<dataset>/
    url: str
    sha256: str


class MissingDataError(UserError):
    """A dataset's files are neither on disk nor downloadable; the message says where to put them."""


class ChecksumError(MissingDataError):
    """A file's bytes do not have the expected sha256."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: str | Path, sha256: str) -> None:
    """Raise ChecksumError unless `path` has the given sha256."""
    actual = sha256_file(path)
    if actual != sha256.lower():
        raise ChecksumError(f"{path}: sha256 is {actual}, expected {sha256.lower()}. "
                            f"The file is corrupt or a different version; delete it and fetch it again.")


def download_file(file: RemoteFile, folder: str | Path, timeout: float = 30.0, progress: bool | None = None) -> Path:
    """Fetch `file.url` into `folder/file.name`, checking its sha256.

    The bytes go to a temporary file beside the target and are renamed into place only
    after the checksum matches, so an interrupted or corrupt download never sits under
    the final name. Network errors propagate (OSError / urllib.error.URLError);
    `locate` turns them into MissingDataError.
    """
    from tqdm.auto import tqdm  # lightning depends on tqdm; imported late to keep import time low

    target = Path(folder) / file.name
    target.parent.mkdir(parents=True, exist_ok=True)
    request = urllib.request.Request(file.url, headers={"User-Agent": USER_AGENT})
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            # disable=None: a bar on a terminal, silence in logs and tests.
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {file.name}",
                      disable=None if progress is None else not progress) as bar:
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        if digest.hexdigest() != file.sha256.lower():
            raise ChecksumError(f"{file.url} gave a file with sha256 {digest.hexdigest()}, expected "
                                f"{file.sha256.lower()}; it was discarded (a changed or broken mirror).")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _missing(folder: Path, files: Sequence[RemoteFile]) -> list[RemoteFile]:
    return [f for f in files if not (folder / f.name).is_file()]


def locate(dataset: str, files: Sequence[RemoteFile], data_dir: str | Path,
           extra_dirs: Iterable[str | Path] = (), download: bool = True,
           timeout: float = 30.0, hint: str = "") -> Path:
    """The folder that holds all of `files` for `dataset`.

    Search order: `<data_dir>/<dataset>/`, then each of `extra_dirs`. Local files are
    found by name only - hashing hundreds of MB on every run is slow, and system copies
    may be recompressed (Debian's Fashion-MNIST .gz differ from upstream's in the gzip
    header only). Downloads, which go into `<data_dir>/<dataset>/`, are always verified.
    `hint` is appended to the error (e.g. other accepted layouts of the same data).
    """
    home = Path(data_dir).expanduser().absolute() / dataset  # absolute: the error must say where, whatever the cwd
    searched = [home, *(Path(d).expanduser().absolute() for d in extra_dirs)]
    for folder in searched:
        if folder.is_dir() and not _missing(folder, files):
            return folder

    missing = _missing(home, files)
    failures: dict[str, str] = {}
    if download:
        created = not home.exists()
        for f in missing:
            try:
                download_file(f, home, timeout=timeout)
            except ChecksumError as e:
                failures[f.name] = str(e)
            except (OSError, ValueError, http.client.HTTPException) as e:  # URLError, timeout, refused, bad URL
                failures[f.name] = f"download failed: {getattr(e, 'reason', None) or e}"
        if not failures:
            return home
        if created and home.is_dir() and not any(home.iterdir()):
            home.rmdir()  # leave no empty folder behind a failed first download
    raise MissingDataError(_message(dataset, missing, failures, searched, home, download, hint))


def _message(dataset: str, missing: Sequence[RemoteFile], failures: dict[str, str],
             searched: Sequence[Path], home: Path, download: bool, hint: str) -> str:
    lines = [f"dataset '{dataset}': {len(missing)} file(s) not found:"]
    for f in missing:
        why = failures.get(f.name, "not downloaded (download is off)" if not download else "")
        lines.append(f"  {f.name}  <- {f.url}" + (f"\n      {why}" if why else ""))
        lines.append(f"      sha256 {f.sha256}")
    lines.append("Searched:")
    lines += [f"  {d}/" + ("" if d.is_dir() else "  (does not exist)") for d in searched]
    lines.append(f"Fix: put the files in {home}/ (e.g. `curl -L -o {home}/<file> <url>` on a machine "
                 f"with internet), or point the platform at a data folder that holds "
                 f"{dataset}/: LABFORMER_DATA_DIR=/path/to/data or paths.data_dir=/path/to/data"
                 + ("" if download else "; or allow downloading (data.download=true)") + ".")
    if hint:
        lines.append(hint)
    return "\n".join(lines)


def extract_tar(archive: str | Path, dest: str | Path, member_dir: str) -> Path:
    """Unpack `member_dir/` from `archive` into `dest/member_dir/` and return that folder.

    Extraction goes to a temporary folder first and is renamed into place, so a half
    extracted tree never looks complete; members that would escape `dest` are refused.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / member_dir
    tmp = Path(tempfile.mkdtemp(dir=dest, prefix=f".{member_dir}."))
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if Path(m.name).parts[:1] == (member_dir,)]
            for m in members:
                if m.name.startswith("/") or ".." in Path(m.name).parts or not (m.isfile() or m.isdir()):
                    raise MissingDataError(f"{archive}: refusing unsafe member '{m.name}'.")
            if not members:
                raise MissingDataError(f"{archive} has no folder '{member_dir}/'; is it the right archive?")
            tar.extractall(tmp, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp / member_dir, final)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise MissingDataError(f"{archive} could not be extracted ({e}); delete it and fetch it again.") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
