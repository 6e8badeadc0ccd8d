import pytest

from s3.io import atomic_path, atomic_write_text


def test_writers_of_one_file_at_once_do_not_collide(tmp_path):
    """Every DDP rank saves the search split: the second rename must not find its file gone."""
    target = tmp_path / "search_split.json"
    with atomic_path(target) as first, atomic_path(target) as second:
        first.write_text("rank 0")
        second.write_text("rank 1")
    assert target.read_text() == "rank 0"  # the outer block renames last
    assert [p.name for p in tmp_path.iterdir()] == ["search_split.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = atomic_write_text(tmp_path / "state.json", "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
