"""Temporary names made without tempfile: tempfile's shapes, modes and exclusivity."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from fluxlite import fsutil

_NAME = re.compile(r"[a-z0-9_]{8}")


def test_mkstemp_makes_a_new_private_file_of_tempfiles_shape(tmp_path: Path) -> None:
    fd, path = fsutil.mkstemp(str(tmp_path), ".out.tmp-")
    try:
        assert os.path.isabs(path) and os.path.dirname(path) == str(tmp_path)
        name = os.path.basename(path)
        assert name.startswith(".out.tmp-") and _NAME.fullmatch(name[len(".out.tmp-"):])
        st = os.fstat(fd)
        assert stat.S_IMODE(st.st_mode) == 0o600 & ~_umask()
        assert (st.st_dev, st.st_ino) == (os.stat(path).st_dev, os.stat(path).st_ino)
        assert not os.get_inheritable(fd)
        os.write(fd, b"x")
        assert os.pread(fd, 1, 0) == b"x"  # open for reading and writing
    finally:
        os.close(fd)


def test_mkdtemp_makes_a_new_0700_directory(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = fsutil.mkdtemp(".", "fluxlite.")
    assert os.path.isabs(path) and os.path.dirname(path) == str(tmp_path)
    assert _NAME.fullmatch(os.path.basename(path)[len("fluxlite."):])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700 & ~_umask()


def test_names_differ_and_a_taken_name_is_never_reused(tmp_path: Path) -> None:
    made = {fsutil.mkdtemp(str(tmp_path), "d.") for _ in range(200)}
    assert len(made) == 200
    fds = [fsutil.mkstemp(str(tmp_path), "f.") for _ in range(200)]
    for fd, _ in fds:
        os.close(fd)
    assert len({p for _, p in fds}) == 200


def test_a_directory_that_cannot_hold_it_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        fsutil.mkstemp(str(tmp_path / "missing"), "x.")
    with pytest.raises(FileNotFoundError):
        fsutil.mkdtemp(str(tmp_path / "missing"), "x.")


def test_token_hex_is_hex_of_the_length_asked() -> None:
    t = fsutil.token_hex(4)
    assert re.fullmatch(r"[0-9a-f]{8}", t) and t != fsutil.token_hex(4)


def _umask() -> int:
    u = os.umask(0o022)
    os.umask(u)
    return u
