"""The storage-driver contract, checked against every driver: registry semantics rely on
exactly these behaviours, so a new backend passes here before anything else."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from registry.storage.drivers.base import PathNotFoundError, StorageDriver
from registry.storage.drivers.filesystem import FilesystemDriver
from registry.storage.drivers.memory import MemoryDriver
from registry.storage.drivers.s3 import S3Driver, part_size

from .conftest import S3Endpoint

_prefixes = itertools.count()


@pytest.fixture(params=["filesystem", "inmemory", "s3",
                        pytest.param("s3-rgw", marks=pytest.mark.rgw)])
async def driver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageDriver]:
    instance: StorageDriver
    if request.param == "filesystem":
        instance = FilesystemDriver(tmp_path / "root")
    elif request.param == "inmemory":
        instance = MemoryDriver()
    else:
        s3: S3Endpoint = request.getfixturevalue(
            "moto_s3" if request.param == "s3" else "rgw_s3")
        instance = S3Driver(s3.bucket, endpoint=s3.url, region=s3.region,
                            access_key=s3.access_key, secret_key=s3.secret_key,
                            prefix=f"contract-{next(_prefixes)}", path_style=True)
    yield instance
    await instance.close()


async def read_all(driver: StorageDriver, path: str, offset: int = 0,
                   length: int | None = None) -> bytes:
    return b"".join([c async for c in driver.reader(path, offset, length)])


async def test_put_get_stat(driver: StorageDriver) -> None:
    await driver.put("a/b/c", b"hello")
    assert await driver.get("a/b/c") == b"hello"
    info = await driver.stat("a/b/c")
    assert (info.size, info.is_dir) == (5, False)
    assert (await driver.stat("a/b")).is_dir
    assert await driver.is_object("a/b/c")
    assert not await driver.is_object("a/b")  # a directory
    assert not await driver.is_object("a/b/nothing")
    await driver.put("a/b/c", b"replaced")
    assert await driver.get("a/b/c") == b"replaced"
    for missing in ("a/x", "nothing/here"):
        with pytest.raises(PathNotFoundError):
            await driver.get(missing)
        with pytest.raises(PathNotFoundError):
            await driver.stat(missing)


async def test_list_and_walk(driver: StorageDriver) -> None:
    for key in ("r/one/_layers/x", "r/one/_manifests/y", "r/two/three/_layers/z", "r/f"):
        await driver.put(key, b"")
    assert await driver.list_dir("r") == ["f", "one", "two"]
    with pytest.raises(PathNotFoundError):
        await driver.list_dir("r/nope")
    walked = await driver.walk("r", lambda name: name.startswith("_"))
    assert sorted(walked) == sorted([
        "f", "one", "one/_layers", "one/_manifests", "two", "two/three", "two/three/_layers"])


async def test_move_and_delete(driver: StorageDriver) -> None:
    await driver.put("up/data", b"blob")
    await driver.put("blobs/x/data", b"old")
    await driver.move("up/data", "blobs/x/data")
    assert await driver.get("blobs/x/data") == b"blob"
    with pytest.raises(PathNotFoundError):
        await driver.get("up/data")
    await driver.put("tree/a/1", b"1")
    await driver.put("tree/a/2", b"2")
    await driver.put("tree/b", b"3")
    await driver.delete("tree/a")
    assert await driver.list_dir("tree") == ["b"]
    await driver.delete("tree/never")  # missing paths are fine
    await driver.delete("tree/b")  # directories are implied: the last file takes it along
    for gone in ("tree", "tree/a"):
        with pytest.raises(PathNotFoundError):
            await driver.stat(gone)
        with pytest.raises(PathNotFoundError):
            await driver.list_dir(gone)
    await driver.put("tree/again", b"")  # and it comes back with the next one
    assert await driver.list_dir("tree") == ["again"]


async def test_reader_offsets(driver: StorageDriver) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    await driver.put("big", data)
    assert await read_all(driver, "big") == data
    assert await read_all(driver, "big", 1_000_000) == data[1_000_000:]
    assert await read_all(driver, "big", 5, 10) == data[5:15]


async def test_appender_commit_abort_resume(driver: StorageDriver) -> None:
    appender = await driver.appender("u/data")
    assert appender.size == 0
    await appender.write(b"abc")
    await appender.write(b"def")
    assert appender.size == 6
    await appender.commit()
    assert await driver.get("u/data") == b"abcdef"
    refused = await driver.appender("u/data")
    await refused.write(b"not wanted")
    await refused.abort()
    assert await driver.get("u/data") == b"abcdef"
    resumed = await driver.appender("u/data", resume_at=4)  # a torn tail is cut off
    assert resumed.size == 4
    await resumed.write(b"XY")
    await resumed.commit()
    assert await driver.get("u/data") == b"abcdXY"
    assert (await driver.stat("u/data")).size == 6


async def test_paths_cannot_escape(driver: StorageDriver) -> None:
    for bad in ("../x", "a/../../b", "a//b", "./a"):
        with pytest.raises(ValueError, match="unsafe"):
            await driver.put(bad, b"")


async def test_appends_of_every_size(driver: StorageDriver) -> None:
    """Appends below, at and above S3's 5 MiB part minimum, assembled by a move."""
    sizes = [100, 6 * 1024 * 1024, 3, 11 * 1024 * 1024, 1024 * 1024, 0, 7]
    chunks = [os.urandom(n) for n in sizes]
    offset = 0
    for chunk in chunks:
        appender = await driver.appender("up/data", resume_at=offset)
        for start in range(0, len(chunk), 700_000):
            await appender.write(chunk[start : start + 700_000])
        await appender.commit()
        offset += len(chunk)
        assert (await driver.stat("up/data")).size == offset
    whole = b"".join(chunks)
    assert await read_all(driver, "up/data", 6_000_000, 2_000_000) == whole[6_000_000:8_000_000]
    assert await driver.list_dir("up") == ["data"]
    await driver.move("up/data", "blobs/b/data")
    assert await read_all(driver, "blobs/b/data") == whole
    assert (await driver.stat("blobs/b/data")).size == len(whole)
    with pytest.raises(PathNotFoundError):
        await driver.stat("up/data")


def test_part_sizes_reach_terabytes() -> None:
    base = 10 * 1024 * 1024
    assert part_size(1, base) == part_size(1000, base) == base
    assert part_size(1001, base) == 2 * base
    assert part_size(10_000, base) == 512 * base
    assert part_size(10_000, 1024**3) == 5 * 1024**3  # capped at S3's part maximum
    largest = sum(part_size(n, base) for n in range(1, 10_001))
    assert largest > 9 * 1024**4  # fixed 10 MiB parts stop at ~98 GiB


async def test_half_done_appends_are_cleaned_up(driver: StorageDriver) -> None:
    """A process that dies mid-append leaves what its storage keeps of it (a file keeps the
    bytes written; S3 keeps an incomplete multipart upload, invisible but billed), and
    `abort_stale_writes` removes what is left half done."""
    appender = await driver.appender("r/_uploads/x/data")
    for _ in range(2):  # past a part: S3 holds at least the first one
        await appender.write(os.urandom(11 * 1024 * 1024))
    # ... and the process is gone: no commit, no abort
    # (a second ahead of now: clocks and timestamp rounding must not make it "recent")
    aborted = await driver.abort_stale_writes("r", older_than=-1)
    if isinstance(driver, S3Driver):
        assert aborted == 1
        bucket = driver.bucket
        uploads = bucket.s3.list_multipart_uploads(Bucket=bucket.name,
                                                   Prefix=bucket.prefix).get("Uploads", [])
        assert uploads == []
        with pytest.raises(PathNotFoundError):
            await driver.stat("r/_uploads/x/data")
    else:
        assert aborted == 0


async def test_append_after_read_and_abort_after_parts(driver: StorageDriver) -> None:
    """Reading an object mid-way (S3 completes its upload to read it), appending on, and
    refusing an append that already sent whole parts: the object is always exactly what
    the committed appends wrote."""
    MiB = 1024 * 1024
    first, second, third = os.urandom(12 * MiB), os.urandom(3 * MiB), os.urandom(11 * MiB)
    for data in (first, second):
        appender = await driver.appender("s/data", resume_at=len(first) if data is second else 0)
        await appender.write(data)
        await appender.commit()
    middle = len(first) - 10
    assert await read_all(driver, "s/data", middle, 20) == (first + second)[middle : middle + 20]
    refused = await driver.appender("s/data", resume_at=len(first) + len(second))
    for _ in range(25):
        await refused.write(os.urandom(MiB))
    await refused.abort()
    assert (await driver.stat("s/data")).size == len(first) + len(second)
    appender = await driver.appender("s/data", resume_at=len(first) + len(second))
    await appender.write(third)
    await appender.commit()
    await driver.move("s/data", "blobs/s/data")
    assert await read_all(driver, "blobs/s/data") == first + second + third


async def test_many_small_appends(driver: StorageDriver) -> None:
    """1 MiB appends (what a client honouring a 1 MiB chunk minimum sends) pile up into
    parts through the carried-over tail."""
    pieces = [os.urandom(1024 * 1024 + n) for n in range(14)]
    offset = 0
    for piece in pieces:
        appender = await driver.appender("m/data", resume_at=offset)
        await appender.write(piece)
        await appender.commit()
        offset += len(piece)
        assert (await driver.stat("m/data")).size == offset
    await driver.move("m/data", "blobs/m/data")
    assert await read_all(driver, "blobs/m/data") == b"".join(pieces)


async def test_list_keys_pages_in_byte_order(driver: StorageDriver) -> None:
    names = ["a", "a-b", "a.c", "a/b", "b", "a/b/c", "z9"]
    for name in names:
        await driver.put(f"idx/{name}!", b"")
    await driver.put("idx-sibling", b"")  # not below idx/
    everything = await driver.list_keys("idx")
    assert everything == sorted(f"{n}!" for n in names)
    assert [k[:-1] for k in everything] == sorted(names)  # `!` keeps the names' order
    assert await driver.list_keys("idx", limit=2) == ["a!", "a-b!"]
    assert await driver.list_keys("idx", start_after="a!", limit=3) == ["a-b!", "a.c!", "a/b!"]
    assert await driver.list_keys("idx", start_after="a/b/c!") == ["b!", "z9!"]
    assert await driver.list_keys("idx", start_after="z9!") == []
    assert await driver.list_keys("nothing/here") == []


async def test_writes_into_directories_other_deletes_empty(driver: StorageDriver) -> None:
    """Writes create a key's directories while deletes elsewhere prune the ones they empty
    (issue 9, item 0: 503s for concurrent pushes into one new repository): every write
    lands, every delete removes what it names, nothing fails. Object stores have no
    directories to race for: a few rounds check the contract there."""
    import asyncio

    workers, rounds = (4, 200) if driver.name == "filesystem" else (4, 4)

    async def sessions(worker: int) -> None:
        for n in range(rounds):
            base = f"repo/_uploads/{worker}-{n}"
            appender = await driver.appender(f"{base}/data", fresh=True)
            await appender.write(b"x")
            await appender.commit()
            await driver.move(f"{base}/data", f"blobs/{n % 3}/{worker}-{n}/data")
            await driver.delete(base)

    await asyncio.gather(*(sessions(w) for w in range(workers)))
    assert await driver.list_keys("repo") == []
    assert len(await driver.list_keys("blobs")) == workers * rounds


async def test_delete_object(driver: StorageDriver) -> None:
    """One object, put or moved there: gone, its empty directories with it, and nothing
    beside it touched; a missing one is fine."""
    await driver.put("one/a/link", b"x")
    await driver.put("one/b/link", b"y")
    await driver.put("up/data", b"moved")
    await driver.move("up/data", "one/c/data")
    await driver.delete_object("one/a/link")
    await driver.delete_object("one/c/data")
    await driver.delete_object("one/never")
    assert await driver.list_dir("one") == ["b"]
    assert await driver.get("one/b/link") == b"y"
    for gone in ("one/a/link", "one/c/data"):
        with pytest.raises(PathNotFoundError):
            await driver.stat(gone)


async def test_versions_change_with_every_write(driver: StorageDriver, tmp_path: Path) -> None:
    """`version`: a driver with tokens gives one that stays while the object stays and
    changes with every `put` (even of the same length, even when a freed inode number
    comes back), and says when nothing is there; one without tokens says None."""
    if not driver.has_versions:
        await driver.put("v/link", b"sha256:" + b"0" * 64)
        assert driver.version("v/link") is None
        return
    with pytest.raises(PathNotFoundError):
        driver.version("v/link")
    await driver.put("v/dir/inner", b"x")
    with pytest.raises(PathNotFoundError):
        driver.version("v/dir")  # a directory is not an object

    def aged(path: str) -> None:
        """Pretend the file was written a minute ago (its version is then trusted)."""
        if isinstance(driver, FilesystemDriver):
            os.utime(driver.root / path, (os.stat(driver.root / path).st_atime,
                                          os.stat(driver.root / path).st_mtime - 60))

    seen = set()
    for round_ in range(20):
        content = f"sha256:{round_ % 2:064d}".encode()  # the same length each time
        await driver.put("v/link", content)
        if isinstance(driver, FilesystemDriver):
            assert driver.version("v/link") is None  # just written: not trusted yet
        aged("v/link")
        token = driver.version("v/link")
        assert token is not None and token == driver.version("v/link")
        seen.add(token)
        if isinstance(driver, MemoryDriver):
            continue  # (its token is the content itself: equal content, equal token)
        assert len(seen) == round_ + 1, "a put left the version as it was"
    await driver.delete_object("v/link")
    with pytest.raises(PathNotFoundError):
        driver.version("v/link")


async def test_put_without_durability_is_still_atomic_and_visible(driver: StorageDriver) -> None:
    """`durable=False` (use records) may skip fsyncs, nothing else: the object is there,
    whole, replaced like any other."""
    await driver.put("nd/record", b"", durable=False)
    assert await driver.is_object("nd/record") and await driver.get("nd/record") == b""
    await driver.put("nd/record", b"second", durable=False)
    assert await driver.get("nd/record") == b"second"
    assert await driver.list_dir("nd") == ["record"]  # no temporary file left beside it
