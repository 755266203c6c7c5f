"""labformer.data.files: finding, downloading (file:// only - nothing leaves the machine), errors."""
from __future__ import annotations

import hashlib
import io
import tarfile
import time
from pathlib import Path

import pytest

from labformer.data.files import (ChecksumError, MissingDataError, RemoteFile, extract_tar, locate,
                                  sha256_file, verify_sha256)
from labformer.errors import UserError

UNREACHABLE = "http://127.0.0.1:9/x"  # discard port, nothing listens: refused at once


def _remote(tmp_path: Path, name: str, payload: bytes, sha256: str | None = None) -> RemoteFile:
    """A 'remote' file served from a local folder through a file:// URL."""
    src = tmp_path / "server" / name
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(payload)
    return RemoteFile(name, src.as_uri(), sha256 or hashlib.sha256(payload).hexdigest())


def _put(folder: Path, *names: str) -> None:
    for n in names:
        (folder / n).parent.mkdir(parents=True, exist_ok=True)
        (folder / n).write_bytes(b"x")


def test_sha256_helpers(tmp_path):
    p = tmp_path / "abc.txt"
    p.write_bytes(b"abc")
    known = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2 example
    assert sha256_file(p) == known
    verify_sha256(p, known.upper())
    with pytest.raises(ChecksumError, match="expected"):
        verify_sha256(p, "0" * 64)


def test_data_dir_wins_over_extra_dirs(tmp_path):
    files = [RemoteFile("a.bin", UNREACHABLE, "0" * 64), RemoteFile("sub/b.bin", UNREACHABLE, "0" * 64)]
    _put(tmp_path / "data" / "ds", "a.bin", "sub/b.bin")
    _put(tmp_path / "system", "a.bin", "sub/b.bin")
    assert locate("ds", files, tmp_path / "data", [tmp_path / "system"], download=False) == tmp_path / "data" / "ds"


def test_falls_back_to_the_first_complete_extra_dir(tmp_path):
    files = [RemoteFile("a.bin", UNREACHABLE, "0" * 64), RemoteFile("b.bin", UNREACHABLE, "0" * 64)]
    _put(tmp_path / "data" / "ds", "a.bin")  # incomplete here
    _put(tmp_path / "partial", "b.bin")  # incomplete there
    _put(tmp_path / "full", "a.bin", "b.bin")
    found = locate("ds", files, str(tmp_path / "data"), [tmp_path / "partial", tmp_path / "full"], download=False)
    assert found == tmp_path / "full"


def test_missing_without_download_names_every_file_dir_url_and_fix(tmp_path):
    files = [RemoteFile("train.gz", "https://example.org/train.gz", "1" * 64),
             RemoteFile("test.gz", "https://example.org/test.gz", "2" * 64)]
    _put(tmp_path / "data" / "ds", "train.gz")
    with pytest.raises(MissingDataError) as info:
        locate("ds", files, tmp_path / "data", [tmp_path / "nowhere"], download=False)
    msg = str(info.value)
    assert isinstance(info.value, UserError)
    for needle in ("test.gz", "https://example.org/test.gz", str(tmp_path / "data" / "ds"),
                   str(tmp_path / "nowhere"), "LABFORMER_DATA_DIR", "paths.data_dir", "download"):
        assert needle in msg, needle
    assert "train.gz" not in msg.split("Searched:")[0]  # present in data_dir, so not listed as missing


def test_unreachable_url_is_a_missing_data_error_not_a_traceback(tmp_path):
    files = [RemoteFile("a.gz", UNREACHABLE, "0" * 64), RemoteFile("b.gz", UNREACHABLE + "2", "0" * 64)]
    start = time.monotonic()
    with pytest.raises(MissingDataError) as info:
        locate("ds", files, tmp_path / "data", timeout=5)
    assert time.monotonic() - start < 10
    msg = str(info.value)
    for needle in ("a.gz", "b.gz", UNREACHABLE, UNREACHABLE + "2", "download failed", str(tmp_path / "data" / "ds")):
        assert needle in msg, needle
    assert not (tmp_path / "data" / "ds").exists()  # no empty folder left behind


def test_download_verifies_and_renames_into_place(tmp_path):
    remote = _remote(tmp_path, "blob.bin", b"payload" * 1000)
    home = locate("ds", [remote], tmp_path / "data")
    assert home == tmp_path / "data" / "ds"
    assert (home / "blob.bin").read_bytes() == b"payload" * 1000
    assert sorted(p.name for p in home.iterdir()) == ["blob.bin"]  # no temp files left


def test_bad_checksum_rejects_and_leaves_no_file(tmp_path):
    remote = _remote(tmp_path, "blob.bin", b"tampered", sha256="f" * 64)
    with pytest.raises(MissingDataError, match="sha256") as info:
        locate("ds", [remote], tmp_path / "data")
    assert "blob.bin" in str(info.value) and remote.url in str(info.value)
    home = tmp_path / "data" / "ds"
    assert not home.exists() or list(home.iterdir()) == []


def test_only_missing_files_are_downloaded(tmp_path):
    have = RemoteFile("have.bin", UNREACHABLE, "0" * 64)  # would fail if fetched
    need = _remote(tmp_path, "need.bin", b"new")
    _put(tmp_path / "data" / "ds", "have.bin")
    assert locate("ds", [have, need], tmp_path / "data") == tmp_path / "data" / "ds"
    assert (tmp_path / "data" / "ds" / "need.bin").read_bytes() == b"new"


def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_extract_tar_unpacks_the_named_folder(tmp_path):
    _tar(tmp_path / "a.tar.gz", {"top/x.txt": b"x", "top/sub/y.txt": b"y", "other/z.txt": b"z"})
    out = extract_tar(tmp_path / "a.tar.gz", tmp_path / "dest", "top")
    assert out == tmp_path / "dest" / "top"
    assert (out / "sub" / "y.txt").read_bytes() == b"y"
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == ["top"]  # no temp dir, no 'other'


def test_extract_tar_refuses_path_traversal(tmp_path):
    _tar(tmp_path / "evil.tar.gz", {"top/../../escape.txt": b"!"})
    with pytest.raises(MissingDataError):
        extract_tar(tmp_path / "evil.tar.gz", tmp_path / "dest", "top")
    assert not (tmp_path / "escape.txt").exists()
