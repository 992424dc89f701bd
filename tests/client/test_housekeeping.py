"""Cache housekeeping: scan and prune after real pulls from the faulty server, and `neumeta-cache`."""

from __future__ import annotations

import os
import time

import neumeta_client as nc
import pytest
from neumeta_client import prune_cache, scan_cache
from neumeta_client.cache_cli import main as cache_main
from neumeta_client.cache_cli import parse_duration, parse_size

from tests.client.conftest import BODY_SIZE, assert_blobs_verified

DAY = 86400.0


def age(path, seconds: float) -> None:
    """Pretend a file was last written (a ref: last used) `seconds` ago."""
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


def ref_file(cache_dir, width: int):
    (path,) = (cache_dir / "refs").glob(f"*--w{width}--*.json")
    return path


def test_a_checkpoint_update_orphans_the_old_blob_and_prune_removes_it(make_client, faulty, cache_dir):
    client = make_client()
    old = client.pull("resnet20", 8)
    faulty.publish(os.urandom(BODY_SIZE))
    new = client.pull("resnet20", 8)
    assert new != old and old.exists()  # a pull never deletes

    report = client.scan_cache()
    assert [m.ref.sha256 for m in report.models] == [faulty.sha256]
    assert report.orphan_blobs == (old,)
    assert report.size_on_disk == 2 * BODY_SIZE

    kept = prune_cache(client.cache)  # the old blob was written just now: inside the grace
    assert kept.removed_blobs == [] and old.exists()
    result = prune_cache(client.cache, grace_s=0)
    assert result.removed_blobs == [old] and result.freed_bytes == BODY_SIZE
    assert not old.exists() and assert_blobs_verified(cache_dir) == [new]
    age(ref_file(cache_dir, 8), 2 * DAY)
    assert client.pull("resnet20", 8) == new
    assert ref_file(cache_dir, 8).stat().st_mtime > time.time() - 60  # a 304 is a use too
    assert faulty.model_requests()[-1].headers["if-none-match"] == faulty.etag  # still a 304, not a download


def test_max_size_evicts_the_least_recently_used_model_and_a_pull_counts_as_use(make_client, faulty, cache_dir):
    client = make_client()
    first = client.pull("resnet20", 8)
    faulty.publish(os.urandom(BODY_SIZE))
    second = client.pull("resnet20", 16)
    age(ref_file(cache_dir, 8), 2 * DAY)
    age(ref_file(cache_dir, 16), DAY)
    client.pull("resnet20", 8)  # the server moved on: width 8 is downloaded again, now sharing `second`
    assert ref_file(cache_dir, 8).stat().st_mtime > time.time() - 60

    faulty.publish(os.urandom(BODY_SIZE))
    third = client.pull("resnet20", 32)
    age(ref_file(cache_dir, 32), 3600)  # an hour ago; width 16 was last used a day ago...
    offline = make_client(offline=True)
    offline.pull("resnet20", 16)  # ...until now: served from the cache offline is still a use
    order = [m.key.split("--")[2] for m in scan_cache(client.cache).models]
    assert order[0] == "w32"

    result = prune_cache(client.cache, max_size=BODY_SIZE, grace_s=0)
    assert [k.split("--")[2] for k in result.removed_models] == ["w32"]
    assert sorted(result.removed_blobs) == sorted([first, third])  # `first` was an orphan already
    assert assert_blobs_verified(cache_dir) == [second]
    assert scan_cache(client.cache).size_on_disk == BODY_SIZE


def test_a_blob_two_keys_share_stays_until_neither_names_it(make_client, faulty, cache_dir):
    client = make_client()
    blob = client.pull("resnet20", 8)
    assert client.pull("resnet20", 16) == blob
    age(ref_file(cache_dir, 8), 40 * DAY)

    result = prune_cache(client.cache, unused_for_s=30 * DAY, grace_s=0)
    assert [k.split("--")[2] for k in result.removed_models] == ["w8"]
    assert result.removed_blobs == [] and result.freed_bytes == 0 and blob.exists()

    age(ref_file(cache_dir, 16), 40 * DAY)
    result = prune_cache(client.cache, unused_for_s=30 * DAY, grace_s=0)
    assert result.removed_blobs == [blob] and not blob.exists()
    assert scan_cache(client.cache).models == ()


def test_a_model_used_within_the_grace_is_kept_over_budget(make_client, faulty, cache_dir):
    client = make_client()
    blob = client.pull("resnet20", 8)
    assert client.prune_cache(max_size=0).removed_models == []  # default grace: an hour
    age(ref_file(cache_dir, 8), 2 * 3600)
    age(blob, 2 * 3600)
    assert len(client.prune_cache(max_size=0).removed_models) == 1 and not blob.exists()


def test_a_key_being_pulled_is_skipped(make_client, faulty, cache_dir):
    client = make_client()
    blob = client.pull("resnet20", 8)
    (model,) = scan_cache(client.cache).models
    lock = client.cache.lock(model.key)
    lock.acquire()
    try:
        result = prune_cache(client.cache, max_size=0, grace_s=0)
    finally:
        lock.release()
    assert result.skipped_busy == [model.key] and result.removed_models == []
    assert blob.exists() and scan_cache(client.cache).models == (model,)


def test_partials_are_kept_unless_asked_and_then_the_next_pull_starts_over(make_client, faulty, cache_dir):
    faulty.script("drop:100000")
    client = make_client(retries=0)
    with pytest.raises(nc.TransportError):
        client.pull("resnet20", 8)
    assert prune_cache(client.cache, grace_s=0).removed_partials == []
    (partial,) = scan_cache(client.cache).partials

    result = prune_cache(client.cache, partials=True, grace_s=0)
    assert result.removed_partials == [partial] and result.freed_bytes == 100000
    assert list((cache_dir / "incomplete").iterdir()) == []  # the validator goes with the body
    client.pull("resnet20", 8)
    assert "range" not in faulty.model_requests()[-1].headers


def test_dry_run_reports_and_removes_nothing(make_client, faulty, cache_dir):
    client = make_client()
    blob = client.pull("resnet20", 8)
    before = sorted(p for p in cache_dir.rglob("*") if p.is_file())

    result = client.prune_cache(max_size=0, grace_s=0, dry_run=True)
    assert len(result.removed_models) == 1 and result.dry_run
    assert sorted(p for p in cache_dir.rglob("*") if p.is_file()) == before and blob.exists()


@pytest.mark.parametrize(("text", "expected"), [("1000", 1000), ("500MB", 500_000_000), ("1.5GiB", 3 * 2**29),
                                                ("2 kb", 2000)])
def test_sizes_parse_in_decimal_and_binary_units(text, expected):
    assert parse_size(text) == expected


def test_durations_parse_to_seconds():
    assert [parse_duration(t) for t in ("45s", "90m", "12h", "30d", "2w")] == [45, 5400, 43200, 2592000, 1209600]


@pytest.mark.parametrize("argv", [["prune", "--max-size", "lots"], ["prune", "--unused-for", "30"], []])
def test_bad_command_lines_exit_2(argv, cache_dir, capsys):
    with pytest.raises(SystemExit) as info:
        cache_main(["--cache-dir", str(cache_dir), *argv])
    assert info.value.code == 2


def test_cli_scan_prune_and_verify(make_client, faulty, cache_dir, capsys):
    client = make_client()
    old = client.pull("resnet20", 8)
    faulty.publish(os.urandom(BODY_SIZE))
    new = client.pull("resnet20", 8)
    age(old, 2 * 3600)  # past the hour's grace

    assert cache_main(["--cache-dir", str(cache_dir), "scan"]) == 0
    out = capsys.readouterr().out
    assert "resnet20" in out and "0123456789ab" in out and "1 models; 1 orphaned blobs (300.0 KB" in out

    assert cache_main(["--cache-dir", str(cache_dir), "prune", "--dry-run"]) == 0
    assert "would remove 0 models, 1 blobs, 0 partials: 300.0 KB" in capsys.readouterr().out and old.exists()
    assert cache_main(["--cache-dir", str(cache_dir), "prune"]) == 0
    assert f"removed {old}" in capsys.readouterr().out and not old.exists()
    assert cache_main(["--cache-dir", str(cache_dir), "prune", "--max-size", "0"]) == 0
    assert "removed 0 models" in capsys.readouterr().out  # just used: inside the hour's grace
    assert cache_main(["--cache-dir", str(cache_dir), "prune", "--max-size", "0", "--grace", "0s", "--dry-run"]) == 0
    assert "would remove 1 models, 1 blobs" in capsys.readouterr().out and new.exists()

    new.write_bytes(b"rot" + new.read_bytes()[3:])
    assert cache_main(["--cache-dir", str(cache_dir), "verify"]) == 1
    assert f"deleted corrupt blob {new}" in capsys.readouterr().out and not new.exists()
    assert cache_main(["--cache-dir", str(cache_dir), "verify"]) == 0
