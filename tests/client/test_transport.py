"""Retries, Retry-After, timeouts and typed errors, against the faulty server."""

from __future__ import annotations

import functools
import random

import neumeta_client as nc
import pytest
from neumeta_client import RetryPolicy

from tests.client.conftest import FAST_RETRY


class FakeClock:
    """Virtual time for a sync client's retry loop: a sleep is recorded and advances the clock at once,
    so what the loop waits and when it gives up do not depend on how busy the machine is."""

    def __init__(self) -> None:
        self.now, self.sleeps = 0.0, []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    from neumeta_client import _effects, _flows, _retry

    fake = FakeClock()
    monkeypatch.setattr(_effects, "time", fake)  # run_sync's time.sleep
    # The retry budget reads this clock; a seeded jitter makes the number of attempts repeatable.
    monkeypatch.setattr(_flows, "RetryState",
                        functools.partial(_retry.RetryState, clock=fake.monotonic, rng=random.Random(0)))
    return fake


def test_busy_with_retry_after_is_waited_for_then_succeeds(make_client, faulty, model_body, clock):
    faulty.script("busy:1")
    path = make_client().pull("resnet20", 8)

    assert path.read_bytes() == model_body
    assert len(faulty.model_requests()) == 2
    assert clock.sleeps == [1.0]  # the server's Retry-After; the jittered backoff would be under 0.01 s


def test_busy_on_every_attempt_stops_at_the_bound_and_raises_busy(make_client, faulty, cache_dir):
    faulty.script(*["busy:0"] * 20)
    with pytest.raises(nc.Busy) as info:
        make_client().pull("resnet20", 8)

    assert len(faulty.model_requests()) == FAST_RETRY.retries + 1
    assert info.value.retry_after == 0 and info.value.status == 503
    assert info.value.request_id == "req-test"
    assert isinstance(info.value, nc.ServerError)
    assert not (cache_dir / "blobs").exists() or list((cache_dir / "blobs").iterdir()) == []


def test_retry_after_beyond_the_policy_is_not_waited_for(make_client, faulty, clock):
    faulty.script("busy:3600")
    with pytest.raises(nc.Busy) as info:
        make_client().pull("resnet20", 8)

    assert clock.sleeps == []
    assert info.value.retry_after == 3600  # the caller can schedule its own retry
    assert len(faulty.model_requests()) == 1


def test_total_time_bound_stops_retries_before_the_attempt_bound(make_client, faulty, clock):
    faulty.script(*["error:internal:500"] * 200)
    policy = RetryPolicy(retries=100, backoff_base_s=0.1, backoff_max_s=0.1, total_s=0.5)
    with pytest.raises(nc.ServerError):
        make_client(retries=policy).pull("resnet20", 8)

    attempts = len(faulty.model_requests())
    assert 1 < attempts < policy.retries + 1  # the time budget stopped it, not the attempt bound
    assert len(clock.sleeps) == attempts - 1 and sum(clock.sleeps) <= policy.total_s


@pytest.mark.parametrize("code", ["internal:500", "gateway:502", "gateway:504", "timeout:408", "slow_down:429"])
def test_retryable_statuses_are_retried(make_client, faulty, model_body, code):
    faulty.script(f"error:{code}")
    assert make_client().pull("resnet20", 8).read_bytes() == model_body
    assert len(faulty.model_requests()) == 2


def test_stall_before_first_byte_times_out_then_retries(make_client, faulty, model_body):
    faulty.script("stall:1.0")
    path = make_client(timeout=(1.0, 0.3)).pull("resnet20", 8)

    assert path.read_bytes() == model_body
    assert [r.fault for r in faulty.model_requests()] == ["stall:1.0", "ok"]


def test_stalling_on_every_attempt_raises_request_timeout(make_client, faulty):
    faulty.script(*["stall:0.5"] * 3)
    with pytest.raises(nc.RequestTimeout) as info:
        make_client(timeout=(1.0, 0.2), retries=RetryPolicy(retries=2, backoff_base_s=0.01)).pull("resnet20", 8)

    assert isinstance(info.value, TimeoutError) and isinstance(info.value, nc.TransportError)
    assert len(faulty.model_requests()) == 3


def test_connection_refused_is_retried_then_raised_as_transport_error(cache_dir):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = nc.Client(f"http://127.0.0.1:{port}", cache_dir=cache_dir, retries=FAST_RETRY)
    with pytest.raises(nc.TransportError) as info:
        client.pull("resnet20", 8)
    client.close()
    assert "ConnectError" in str(info.value)


@pytest.mark.parametrize(("fault", "error", "builtin"), [
    ("error:unknown_arch:404", nc.UnknownArch, LookupError),
    ("error:width_out_of_range:422", nc.WidthOutOfRange, ValueError),
    ("error:invalid_parameter:422", nc.InvalidParameter, ValueError),
    ("error:unauthorized:401", nc.Unauthorized, PermissionError),
])
def test_client_errors_are_typed_and_not_retried(make_client, faulty, fault, error, builtin):
    faulty.script(fault)
    with pytest.raises(error) as info:
        make_client().pull("resnet20", 8)

    assert isinstance(info.value, builtin)
    assert info.value.code == fault.split(":")[1]
    assert info.value.request_id == "req-test"
    assert len(faulty.model_requests()) == 1


def test_api_key_is_sent_as_bearer(make_client, faulty, monkeypatch):
    make_client(api_key="s3cret").pull("resnet20", 8)
    monkeypatch.setenv("NEUMETA_API_KEY", "from-env")
    make_client().pull("resnet20", 9)

    assert [r.headers["authorization"] for r in faulty.model_requests()] == ["Bearer s3cret", "Bearer from-env"]


def test_archs_is_retried_and_kept_for_offline_use(make_client, faulty):
    faulty.script("busy:0")
    catalog = make_client().archs()
    assert catalog["resnet20"]["widths"]["max"] == 64
    assert len(faulty.requests) == 2

    assert make_client(offline=True).archs() == catalog
    assert len(faulty.requests) == 2


def test_archs_offline_without_cache_raises(make_client):
    with pytest.raises(nc.OfflineError):
        make_client(offline=True).archs()
