"""`Client.pull` verifies before it returns, and resumes through the immutable URL (issue 41)."""

from __future__ import annotations

import os

import neumeta_client as nc
import pytest

from tests.client.conftest import assert_blobs_verified


def _rot_one_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size: only a hash can tell
    path.write_bytes(bytes(data))


def test_a_rotted_cached_blob_is_a_miss_and_is_downloaded_again(make_client, faulty, model_body, cache_dir):
    path = make_client().pull("resnet20", 8)
    _rot_one_byte(path)

    again = make_client().pull("resnet20", 8)
    assert again.read_bytes() == model_body
    assert "if-none-match" not in faulty.model_requests()[-1].headers  # not revalidated: re-downloaded
    assert assert_blobs_verified(cache_dir) == [again]


def test_offline_a_rotted_copy_is_a_typed_error_and_is_deleted(make_client, faulty):
    path = make_client().pull("resnet20", 8)
    _rot_one_byte(path)
    before = len(faulty.requests)

    with pytest.raises(nc.CachedCopyCorrupt) as info:
        make_client(offline=True).pull("resnet20", 8)
    assert isinstance(info.value, nc.OfflineError) and isinstance(info.value, ConnectionError)
    assert not path.exists() and len(faulty.requests) == before


def test_an_unreachable_server_never_falls_back_to_a_rotted_copy(make_client, faulty):
    path = make_client().pull("resnet20", 8)
    _rot_one_byte(path)
    faulty.script(*["error:internal:500"] * 10)
    with pytest.raises(nc.ServerError):
        make_client().pull("resnet20", 8)
    assert not path.exists()


def test_a_resume_goes_to_the_immutable_url_with_if_range(make_client, faulty, model_body):
    faulty.immutable_urls = True
    faulty.script("drop:100000")
    path = make_client().pull("resnet20", 8)

    (first,) = faulty.model_requests()
    (resumed,) = faulty.blob_requests()
    assert "range" not in first.headers
    assert resumed.path == f"/blobs/sha256/{faulty.sha256}"
    assert (resumed.headers["range"], resumed.headers["if-range"]) == ("bytes=100000-", faulty.etag)
    assert path.read_bytes() == model_body


def test_a_404_on_the_immutable_url_falls_back_to_model_under_if_range(make_client, faulty, model_body, cache_dir):
    faulty.immutable_urls = True
    faulty.script("drop:100000")
    with pytest.raises(nc.TransportError):
        make_client(retries=0).pull("resnet20", 8)
    old_etag = faulty.etag
    faulty.publish(os.urandom(len(model_body)))  # a checkpoint update while the device was away

    path = make_client().pull("resnet20", 8)
    (pinned,) = faulty.blob_requests()
    assert pinned.path == f"/blobs/sha256/{old_etag.strip(chr(34))}"  # 404 there: not served any more
    retry = faulty.model_requests()[-1]
    assert (retry.headers["range"], retry.headers["if-range"]) == ("bytes=100000-", old_etag)
    assert path.read_bytes() == faulty.body  # the whole new model, never old head + new tail
    assert assert_blobs_verified(cache_dir) == [path]
