"""kdet.atomic: a file or folder appears complete under its final name, or not at all."""

import os

import pytest

from kdet import atomic


def test_files_and_copies_appear_whole_with_readable_modes(tmp_path):
    atomic.write_text(tmp_path / "a" / "b.json", "{}")
    atomic.copy_file(tmp_path / "a" / "b.json", tmp_path / "c.json")
    assert (tmp_path / "c.json").read_text() == "{}"
    assert os.stat(tmp_path / "c.json").st_mode & 0o777 == 0o644
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b.json"]


def test_a_failed_write_keeps_the_old_file_and_no_staging_copy(tmp_path):
    target = tmp_path / "metrics.json"
    atomic.write_text(target, "old")

    def half_then_fail(file):
        file.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic.write_file(target, half_then_fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_folder_is_replaced_only_once_complete(tmp_path):
    target = tmp_path / "model"
    atomic.replace_folder(target, lambda d: open(os.path.join(d, "v1"), "w").close())

    def fail(staging):
        open(os.path.join(staging, "v2"), "w").close()
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic.replace_folder(target, fail)
    assert [p.name for p in target.iterdir()] == ["v1"]
    atomic.replace_folder(target, lambda d: open(os.path.join(d, "v2"), "w").close())
    assert [p.name for p in target.iterdir()] == ["v2"]
    assert os.stat(target).st_mode & 0o777 == 0o755
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
