"""feedback_api.ziparchive: a zip with members deflated in chunks on threads, read back by
Python's zipfile (and Info-ZIP's unzip where installed)."""

import os
import shutil
import subprocess
import zipfile

import pytest

from feedback_api import ziparchive


@pytest.fixture
def files(tmp_path):
    text = "".join(f'{{"n": {n}, "text": "ünïcode ✓ {n % 97}"}}\n' for n in range(40_000))
    members = {
        "train.jsonl": text.encode() + os.urandom(30_000),  # compressible, then not
        "empty.jsonl": b"",
        "train.parquet": os.urandom(5_000),
        "README.md": b"# card\n",
    }
    for name, data in members.items():
        (tmp_path / name).write_bytes(data)
    return tmp_path, members


def write(folder, target, members):
    ziparchive.write_zip(
        target, [(name, folder / name, not name.endswith(".parquet")) for name in members]
    )
    return target.read_bytes()


@pytest.mark.parametrize("chunk", [1 << 10, 7_777, 1 << 22])
def test_every_member_reads_back_with_its_crc(files, monkeypatch, chunk):
    folder, members = files
    monkeypatch.setattr(ziparchive, "CHUNK", chunk)
    write(folder, folder / "out.zip", members)
    with zipfile.ZipFile(folder / "out.zip") as archive:
        assert archive.testzip() is None
        infos = archive.infolist()
        assert [info.filename for info in infos] == list(members)
        for info in infos:
            assert archive.read(info) == members[info.filename]
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.external_attr >> 16 == 0o100644
    stored = {info.filename: info.compress_type for info in infos}
    assert stored["train.parquet"] == zipfile.ZIP_STORED
    assert stored["train.jsonl"] == zipfile.ZIP_DEFLATED
    big = next(info for info in infos if info.filename == "train.jsonl")
    assert big.compress_size < big.file_size / 3


def test_the_bytes_depend_only_on_the_files_not_on_the_threads(files, monkeypatch):
    folder, members = files
    monkeypatch.setattr(ziparchive, "CHUNK", 1 << 12)
    first = write(folder, folder / "a.zip", members)
    monkeypatch.setattr(ziparchive, "THREADS", 1)
    assert write(folder, folder / "b.zip", members) == first
    os.utime(folder / "train.jsonl", (0, 0))  # dates on disk do not matter
    assert write(folder, folder / "c.zip", members) == first


@pytest.mark.skipif(shutil.which("unzip") is None, reason="Info-ZIP unzip not installed")
def test_info_zip_unzip_tests_the_archive(files):
    folder, members = files
    write(folder, folder / "out.zip", members)
    done = subprocess.run(["unzip", "-t", str(folder / "out.zip")], capture_output=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert b"No errors detected" in done.stdout


@pytest.mark.parametrize("chunk", [1 << 10, 7_777])
def test_a_member_deflated_while_written_gives_the_same_archive(files, monkeypatch, chunk):
    """A Follower deflates a file as another thread appends to it (writes of any size, an
    empty file too): the archive is the one write_zip makes from the finished files."""
    folder, members = files
    monkeypatch.setattr(ziparchive, "CHUNK", chunk)
    expected = write(folder, folder / "plain.zip", members)
    deflated = {}
    for name in ("train.jsonl", "empty.jsonl"):
        data = members[name]
        follower = ziparchive.Follower(folder / f"copy-{name}", folder / f".{name}.deflated")
        with open(folder / f"copy-{name}", "wb") as out:
            follower.start()
            for start in range(0, len(data), 5_003):
                out.write(data[start : start + 5_003])
                out.flush()
                follower.grow(min(start + 5_003, len(data)))
        deflated[name] = follower.result()
    ziparchive.write_zip(
        folder / "ahead.zip",
        [
            (name, folder / name, deflated.get(name, not name.endswith(".parquet")))
            for name in members
        ],
    )
    assert (folder / "ahead.zip").read_bytes() == expected


def test_a_follower_reports_a_missing_file(tmp_path):
    follower = ziparchive.Follower(tmp_path / "missing.jsonl", tmp_path / "out.deflated")
    follower.start()
    with pytest.raises(FileNotFoundError):
        follower.result()
