import hashlib

import pytest

from service.cache.envelope import HEADER_BYTES, MAGIC, CorruptEntry, open_envelope, open_sealed, seal

PAYLOAD = bytes(range(256)) * 4


@pytest.mark.parametrize("payload", [b"", b"x", PAYLOAD])
def test_round_trip(payload):
    sealed = seal(payload)
    assert len(sealed) == HEADER_BYTES + len(payload)
    assert sealed.startswith(MAGIC) and sealed[len(MAGIC) : len(MAGIC) + 32] == hashlib.sha256(payload).digest()
    assert open_envelope(sealed) == payload


@pytest.mark.parametrize("cut", [0, 5, len(MAGIC), HEADER_BYTES - 1, HEADER_BYTES, HEADER_BYTES + 100, -1])
def test_truncated_value_is_rejected(cut):
    with pytest.raises(CorruptEntry):
        open_envelope(seal(PAYLOAD)[:cut])


def test_extended_value_is_rejected():
    with pytest.raises(CorruptEntry, match="length"):
        open_envelope(seal(PAYLOAD) + b"\x00")


@pytest.mark.parametrize("position", [0, 7, 8, 39, 40, 47, HEADER_BYTES, HEADER_BYTES + 500, -1])
def test_any_flipped_bit_is_rejected(position):
    value = bytearray(seal(PAYLOAD))
    value[position] ^= 0x01
    with pytest.raises(CorruptEntry):
        open_envelope(bytes(value))


@pytest.mark.parametrize("foreign", [b"", b"PONG", b"\x08\x01onnx-without-envelope" * 10])
def test_foreign_value_is_rejected(foreign):
    with pytest.raises(CorruptEntry, match="not a cache envelope"):
        open_envelope(foreign)


def test_a_known_digest_is_sealed_as_given_and_opened_with_the_payload():
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    assert seal(PAYLOAD, digest) == seal(PAYLOAD)
    assert open_sealed(seal(PAYLOAD, digest)) == (PAYLOAD, digest)
    with pytest.raises(CorruptEntry, match="SHA-256"):
        open_sealed(seal(PAYLOAD, "00" * 32))
