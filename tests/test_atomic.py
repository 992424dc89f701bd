"""service.atomic: a file is replaced whole or not at all, and a failed write leaves nothing behind."""

from __future__ import annotations

import stat

import pytest

from service.atomic import atomic_path, write_atomic


def test_write_atomic_replaces_the_file_whole_and_leaves_no_temp(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    write_atomic(target, b"new bytes")
    assert target.read_bytes() == b"new bytes"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # readable by the service, not mkstemp's 0600


def test_a_write_that_fails_keeps_the_old_file_and_removes_its_temp(tmp_path):
    target = tmp_path / "last.pt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        assert tmp.parent == tmp_path and tmp.name.endswith(".incomplete")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
