import threading

import pytest

from service.cache.memory import MemoryLRU


def test_get_returns_what_was_put_and_none_for_absent():
    lru = MemoryLRU(100)
    assert lru.put("a", b"x" * 10)
    assert lru.get("a") == b"x" * 10
    assert lru.get("missing") is None
    assert lru.nbytes == 10 and len(lru) == 1


def test_evicts_least_recently_used_until_the_new_blob_fits():
    lru = MemoryLRU(100)
    lru.put("a", b"a" * 40)
    lru.put("b", b"b" * 40)
    assert lru.get("a") is not None  # a is now more recent than b
    lru.put("c", b"c" * 40)  # 120 > 100: evict b (oldest), keep a
    assert "b" not in lru and "a" in lru and "c" in lru
    assert lru.nbytes == 80
    lru.put("d", b"d" * 100)  # needs the whole budget: everything else goes
    assert list(lru._entries) == ["d"] and lru.nbytes == 100


def test_replacing_a_key_updates_its_size():
    lru = MemoryLRU(100)
    lru.put("a", b"a" * 60)
    lru.put("a", b"A" * 10)
    assert lru.get("a") == b"A" * 10 and lru.nbytes == 10


def test_blob_larger_than_the_bound_is_refused_without_evicting():
    lru = MemoryLRU(100)
    lru.put("a", b"a" * 50)
    assert not lru.put("huge", b"h" * 101)
    assert "huge" not in lru and lru.get("a") == b"a" * 50


def test_zero_bytes_disables_the_tier():
    lru = MemoryLRU(0)
    assert not lru.enabled
    assert not lru.put("a", b"x")
    assert lru.get("a") is None and len(lru) == 0


def test_discard_and_clear_release_bytes():
    lru = MemoryLRU(100)
    lru.put("a", b"a" * 30)
    lru.put("b", b"b" * 30)
    lru.discard("a")
    lru.discard("never-there")
    assert lru.nbytes == 30 and "a" not in lru
    lru.clear()
    assert lru.nbytes == 0 and len(lru) == 0


def test_negative_bound_is_rejected():
    with pytest.raises(ValueError, match="max_bytes"):
        MemoryLRU(-1)


def test_byte_accounting_stays_exact_under_threads():
    lru = MemoryLRU(1000)

    def hammer(seed: int) -> None:
        for i in range(2000):
            key = f"k{(i * seed) % 37}"
            lru.put(key, b"x" * ((i + seed) % 90 + 1))
            lru.get(f"k{i % 37}")

    threads = [threading.Thread(target=hammer, args=(s,)) for s in (1, 3, 7, 11)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert lru.nbytes == sum(len(v) for v in lru._entries.values())
    assert lru.nbytes <= 1000
