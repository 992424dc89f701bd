"""`Client.pull` against the faulty server: integrity, resume, revalidation, offline, locking."""

from __future__ import annotations

import hashlib
import threading

import neumeta_client as nc
import pytest
from neumeta_client import RetryPolicy

from tests.client.conftest import BODY_SIZE, FAST_RETRY, assert_blobs_verified


def test_pull_stores_a_verified_blob_and_a_ref(make_client, faulty, model_body, cache_dir):
    path = make_client().pull("resnet20", 8)

    assert path == cache_dir / "blobs" / faulty.sha256
    assert path.read_bytes() == model_body
    (request,) = faulty.model_requests()
    assert request.query == {"arch": "resnet20", "width": "8", "dtype": "float32"}
    assert "range" not in request.headers and "if-none-match" not in request.headers
    (ref,) = (cache_dir / "refs").glob("*.json")
    assert faulty.sha256 in ref.read_text()
    assert list((cache_dir / "incomplete").glob("*")) == []


def test_second_pull_revalidates_with_etag_and_uses_the_blob_on_304(make_client, faulty, cache_dir):
    client = make_client()
    first = client.pull("resnet20", 8)
    mtime = first.stat().st_mtime_ns
    second = client.pull("resnet20", 8)

    assert second == first and second.stat().st_mtime_ns == mtime
    revalidation = faulty.model_requests()[1]
    assert revalidation.headers["if-none-match"] == faulty.etag


def test_dropped_connection_resumes_with_range_and_verifies(make_client, faulty, model_body, cache_dir):
    faulty.script("drop:100000")
    path = make_client().pull("resnet20", 8)

    first, second = faulty.model_requests()
    assert "range" not in first.headers
    assert second.headers["range"] == "bytes=100000-"
    assert second.headers["if-range"] == faulty.etag
    assert path.read_bytes() == model_body
    assert assert_blobs_verified(cache_dir) == [path]
    assert list((cache_dir / "incomplete").glob("*")) == []


def test_interrupted_download_is_resumed_by_a_later_client(make_client, faulty, model_body, cache_dir):
    faulty.script("drop:123456")
    with pytest.raises(nc.TransportError) as info:
        make_client(retries=0).pull("resnet20", 8)
    assert isinstance(info.value, ConnectionError)
    assert assert_blobs_verified(cache_dir) == []  # nothing partial is promoted
    (partial,) = (cache_dir / "incomplete").glob("*.incomplete")
    assert partial.read_bytes() == model_body[:123456]

    path = make_client().pull("resnet20", 8)  # a new client, as after a process restart
    assert faulty.model_requests()[-1].headers["range"] == "bytes=123456-"
    assert path.read_bytes() == model_body


def test_server_ignoring_range_restarts_the_download_cleanly(make_client, faulty, model_body, cache_dir):
    faulty.script("drop:50000", "ignore_range")
    path = make_client().pull("resnet20", 8)

    assert faulty.model_requests()[1].headers["range"] == "bytes=50000-"  # asked, got 200 instead
    assert path.read_bytes() == model_body  # not 50000 stale bytes + the whole body


def test_corrupt_body_is_caught_and_retried(make_client, faulty, model_body, cache_dir):
    faulty.script("corrupt")
    path = make_client().pull("resnet20", 8)

    assert len(faulty.model_requests()) == 2
    assert path.read_bytes() == model_body
    assert assert_blobs_verified(cache_dir) == [path]


def test_persistent_corruption_raises_checksum_mismatch_after_the_retry_bound(make_client, faulty, cache_dir):
    faulty.script(*["corrupt"] * 10)
    with pytest.raises(nc.ChecksumMismatch) as info:
        make_client().pull("resnet20", 8)

    assert info.value.expected == faulty.sha256 and info.value.actual != faulty.sha256
    assert len(faulty.model_requests()) == FAST_RETRY.retries + 1
    assert assert_blobs_verified(cache_dir) == []
    assert list((cache_dir / "incomplete").glob("*.incomplete")) == []  # suspect bytes are not resumed from


def test_corrupt_resumed_tail_discards_the_partial_and_refetches_whole(make_client, faulty, model_body, cache_dir):
    faulty.script("drop:1000", "corrupt")  # the 206 tail is corrupt: the whole file fails its hash
    path = make_client().pull("resnet20", 8)

    requests = faulty.model_requests()
    assert [r.headers.get("range") for r in requests] == [None, "bytes=1000-", None]
    assert path.read_bytes() == model_body


def test_blobs_never_show_partial_files_during_a_faulty_download(make_client, faulty, cache_dir):
    faulty.script("drop:10000", "drop:150000", "corrupt", "drop:290000")
    seen_bad: list[str] = []
    done = threading.Event()

    def watch() -> None:  # polls blobs/ while the download runs
        while not done.is_set():
            for path in list((cache_dir / "blobs").glob("*")) if (cache_dir / "blobs").exists() else []:
                try:
                    data = path.read_bytes()
                except FileNotFoundError:
                    continue
                if hashlib.sha256(data).hexdigest() != path.name:
                    seen_bad.append(path.name)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        path = make_client(retries=RetryPolicy(retries=6, backoff_base_s=0.01)).pull("resnet20", 8)
    finally:
        done.set()
        watcher.join()
    assert seen_bad == []
    assert path.stat().st_size == BODY_SIZE


def test_progress_reports_bytes_on_disk_up_to_the_total(make_client, faulty):
    calls: list[tuple[int, int | None]] = []
    faulty.script("drop:100000")
    make_client().pull("resnet20", 8, progress=lambda done, total: calls.append((done, total)))

    assert calls[-1] == (BODY_SIZE, BODY_SIZE)
    resumed = [done for done, _ in calls if done > 100000]
    assert resumed == sorted(resumed)


def test_offline_serves_the_cached_blob_without_network(make_client, faulty, monkeypatch):
    path = make_client().pull("resnet20", 8)
    before = len(faulty.requests)
    monkeypatch.setenv("NEUMETA_OFFLINE", "1")

    assert make_client().pull("resnet20", 8) == path
    assert len(faulty.requests) == before


def test_offline_without_a_cached_copy_raises_offline_error(make_client, faulty):
    with pytest.raises(nc.OfflineError) as info:
        make_client(offline=True).pull("resnet20", 16)
    assert isinstance(info.value, ConnectionError)
    assert faulty.requests == []


def test_verify_deletes_a_blob_rotted_on_disk_and_the_next_pull_refetches(make_client, faulty, model_body):
    client = make_client()
    path = client.pull("resnet20", 8)
    path.write_bytes(bytes(len(model_body)))  # same size: the cheap check cannot see it

    assert client.verify() == [path]
    assert not path.exists()
    assert client.pull("resnet20", 8).read_bytes() == model_body
    assert "if-none-match" not in faulty.model_requests()[-1].headers


def test_concurrent_pulls_of_one_key_download_once(make_client, faulty, model_body):
    faulty.script("stall:0.3")  # keep the first download in flight while the second waits on the lock
    results = []
    threads = [threading.Thread(target=lambda: results.append(make_client().pull("resnet20", 8))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(results) == 2 and results[0] == results[1]
    downloads = [r for r in faulty.model_requests() if "if-none-match" not in r.headers]
    assert len(downloads) == 1


def test_lock_held_elsewhere_times_out_with_a_typed_error(make_client, faulty):
    client = make_client(lock_timeout=0.3)
    from neumeta_client._protocol import ModelRequest

    holder = client.cache.lock(ModelRequest("resnet20", 8).cache_key(client.base_url))
    holder.acquire()
    try:
        with pytest.raises(nc.CacheLockTimeout) as info:
            client.pull("resnet20", 8)
    finally:
        holder.release()
    assert isinstance(info.value, TimeoutError)
    assert faulty.requests == []


def test_conflicting_size_arguments_fail_before_any_request(make_client, faulty):
    client = make_client()
    with pytest.raises(nc.InvalidParameter):
        client.pull("resnet20", 8, max_params=1000)
    with pytest.raises(ValueError):
        client.pull("resnet20", 0)
    with pytest.raises(nc.InvalidParameter):
        client.pull("resnet20", 8, dtype="bfloat16")
    assert faulty.requests == []


def test_budget_and_default_requests_use_distinct_cache_keys(make_client, faulty, cache_dir):
    client = make_client()
    client.pull("resnet20", max_params=5000)
    client.pull("resnet20")

    assert faulty.model_requests()[0].query["max_params"] == "5000"
    assert "width" not in faulty.model_requests()[1].query
    assert len(list((cache_dir / "refs").glob("*.json"))) == 2
    assert len(assert_blobs_verified(cache_dir)) == 1  # same bytes, one blob


def test_unreachable_server_falls_back_to_the_verified_cached_copy(make_client, faulty, caplog):
    path = make_client().pull("resnet20", 8)
    faulty.script(*["stall:0.5"] * 4)
    with caplog.at_level("WARNING", logger="neumeta_client"):
        again = make_client(timeout=(1.0, 0.1)).pull("resnet20", 8)

    assert again == path
    assert "using the cached copy" in caplog.text
    assert len(faulty.model_requests()) == 1 + FAST_RETRY.revalidate_retries + 1  # not the whole budget


@pytest.mark.parametrize("faults", [["error:internal:500"] * (FAST_RETRY.revalidate_retries + 1), ["busy:3600"]],
                         ids=["failing", "busy-for-an-hour"])
def test_a_failing_or_busy_server_falls_back_to_the_verified_cached_copy(make_client, faulty, caplog, faults):
    path = make_client().pull("resnet20", 8)
    faulty.script(*faults)
    with caplog.at_level("WARNING", logger="neumeta_client"):
        assert make_client().pull("resnet20", 8) == path
    assert "using the cached copy" in caplog.text
    assert len(faulty.model_requests()) == 1 + len(faults)


def test_a_client_error_is_raised_even_with_a_cached_copy(make_client, faulty):
    make_client().pull("resnet20", 8)
    faulty.script("error:unauthorized:401")
    with pytest.raises(nc.Unauthorized):
        make_client().pull("resnet20", 8)


def test_a_failing_server_without_a_cached_copy_raises_server_error(make_client, faulty):
    faulty.script(*["error:internal:500"] * (FAST_RETRY.retries + 1))
    with pytest.raises(nc.ServerError):
        make_client().pull("resnet20", 8)
    assert len(faulty.model_requests()) == FAST_RETRY.retries + 1  # nothing to fall back to: the whole budget


def test_the_model_bytes_reach_the_disk_before_the_rename_into_blobs(make_client, monkeypatch):
    import os

    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                 real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda src, dst: (events.append(("replace", str(src))),
                                                         real_replace(src, dst))[1])
    make_client().pull("resnet20", 8)
    promoted = next(i for i, (op, path) in enumerate(events) if op == "replace" and path.endswith(".incomplete"))
    partial = events[promoted][1]
    assert ("fsync", partial) in events[:promoted]


def test_a_full_disk_is_a_typed_error_and_keeps_the_partial_for_a_resume(make_client, faulty, cache_dir, monkeypatch):
    import errno

    from neumeta_client._pull import BlobWriter

    real_write, written = BlobWriter.write, []

    def write(self, chunk: bytes) -> None:
        if written:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(len(chunk))
        real_write(self, chunk)

    monkeypatch.setattr(BlobWriter, "write", write)
    with pytest.raises(nc.CacheWriteError) as caught:
        make_client().pull("resnet20", 8)
    assert isinstance(caught.value, OSError) and caught.value.errno == errno.ENOSPC
    assert len(faulty.model_requests()) == 1  # no retry: another attempt would fill the same disk
    assert not list((cache_dir / "blobs").glob("*")) and list((cache_dir / "incomplete").glob("*.incomplete"))

    monkeypatch.undo()  # space freed: the next pull resumes where the first stopped
    path = make_client().pull("resnet20", 8)
    assert faulty.model_requests()[-1].headers["range"] == f"bytes={written[0]}-"
    assert assert_blobs_verified(cache_dir) == [path]
