"""EventLog: the compact log (one buffer and an array of lengths, ids rebuilt on
replay): replay, trimming at its boundaries, honest size accounting, a reader
thread beside the writer."""
from __future__ import annotations

import gc
import threading
import tracemalloc
from typing import List, Optional, Tuple

import pytest

import helixstream as hs
from helixstream.sse._encoding import encode_event
from helixstream.sse._registry import EXPIRED, UNKNOWN, ResumeError
from helixstream.sse._replay import _EVENT_OVERHEAD, _WHOLE_OVERHEAD, EventLog

PREFIX = "AbCdEfGhIjKl."


def event(seq: int, data: str = "", name: Optional[str] = None, prefix: str = PREFIX) -> bytes:
    return encode_event(name, data or f" word{seq}", prefix + str(seq))


def events(first: int, last: int, **kw: str) -> List[Tuple[int, bytes]]:
    return [(seq, event(seq, **kw)) for seq in range(first, last + 1)]


def test_log_is_exported() -> None:
    assert hs.EventLog is EventLog


@pytest.mark.parametrize("prefix", [None, PREFIX])
def test_replay_gives_back_the_bytes_recorded(prefix: Optional[str]) -> None:
    log = EventLog(100, id_prefix=prefix)
    recorded = [
        (1, event(1)),
        (2, event(2, "two\nlines\r\nand a third", "message")),  # several data: lines
        (3, event(3, "é ü 字 🙂", "progress")),
        (4, b": a comment, no id\n"),  # not an event of the prefix: kept whole
        (5, event(5, prefix="other.")),  # another stream's id: kept whole
        (6, event(6, "ends with id: AbCdEfGhIjKl.6")),  # its id line still comes last
        (7, b""),
        (8, event(8)),
    ]
    log.extend(recorded[:3])
    for seq, data in recorded[3:]:
        log.append(seq, data)
    assert log.last_seq == 8 and len(log) == 8
    for seq in range(0, 9):
        assert log.after(seq) == recorded[seq:]
        last, data = log._read_after(seq)
        assert data == b"".join(d for _, d in recorded[seq:])
        assert last == (8 if seq < 8 else seq)


def test_an_id_line_given_by_its_length_is_kept_as_one_found_by_looking() -> None:
    # SSEReplay's feed tells the log how long the id line it wrote is (no search):
    # what is kept, replayed and counted is the same either way
    told, found = EventLog(100, id_prefix=PREFIX), EventLog(100, id_prefix=PREFIX)
    for seq in range(1, 13):  # into two digits
        data = event(seq, f"word{seq}")
        found.append(seq, data)
        told.append(seq, data, len(f"id: {PREFIX}{seq}\n\n"))
    assert bytes(told._buf) == bytes(found._buf) and told._whole is found._whole is None
    assert told.after(0) == found.after(0) and told.size_bytes == found.size_bytes


def test_ids_are_kept_once_and_rebuilt() -> None:
    log = EventLog(10, id_prefix=PREFIX)
    log.extend(events(1, 3))
    # what is kept: each event's text, without its id line, "data: " and the line end
    assert bytes(log._buf) == b"".join(f" word{k}".encode() for k in range(1, 4))
    assert log._whole is None
    assert log.after(0) == events(1, 3)
    assert log.size_bytes == len(log._buf) + 3 * _EVENT_OVERHEAD


def test_trimmed_to_max_events_at_the_boundaries() -> None:
    log = EventLog(3, id_prefix=PREFIX)
    log.extend(events(1, 3))
    assert [s for s, _ in log.after(0)] == [1, 2, 3]  # exactly full: nothing dropped
    log.append(4, event(4))
    assert len(log) == 3
    assert [s for s, _ in log.after(1)] == [2, 3, 4]  # the oldest kept: after 1
    with pytest.raises(ResumeError) as err:
        log.after(0)  # event 1 is gone
    assert err.value.code == EXPIRED
    log.extend(events(5, 9))  # a batch longer than the log
    assert len(log) == 3
    assert log.after(6) == events(7, 9)
    assert log.after(9) == []
    for seq in (0, 5):
        with pytest.raises(ResumeError) as err:
            log.check(seq)
        assert err.value.code == EXPIRED
    for seq in (10, -1):
        with pytest.raises(ResumeError) as err:
            log.after(seq)
        assert err.value.code == UNKNOWN
    log.check(6)
    log.check(9)


def test_one_event_log() -> None:
    log = EventLog(1, id_prefix=PREFIX)
    for seq in range(1, 300):  # across several compactions of the lengths
        log.append(seq, event(seq))
        assert log.after(seq - 1) == [(seq, event(seq))]
        assert log.size_bytes == len(log._buf) + _EVENT_OVERHEAD
    assert len(log._lens) < 200  # the dropped head is compacted away


def reference_size(kept: List[Tuple[int, bytes]], prefix: Optional[str]) -> int:
    size = 0
    for seq, data in kept:
        tail = f"id: {prefix}{seq}\n\n".encode()
        if prefix is not None and data.endswith(tail):
            data = data[: -len(tail)]
        else:
            size += _WHOLE_OVERHEAD if prefix else 0
        if len(data) > 6 and data.startswith(b"data: ") and data.endswith(b"\n"):
            data = data[6:-1]  # one data line: its text only
        size += len(data) + _EVENT_OVERHEAD
    return size


@pytest.mark.parametrize("prefix", [None, PREFIX])
def test_size_counts_what_is_kept(prefix: Optional[str]) -> None:
    grown: List[int] = []
    log = EventLog(50, id_prefix=prefix)
    log._on_change = grown.append
    everything: List[Tuple[int, bytes]] = []
    for seq in range(1, 500):
        data = event(seq, "x" * (seq % 37)) if seq % 7 else b"data: whole %d\n\n" % seq
        log.append(seq, data)
        everything.append((seq, data))
        kept = everything[-50:]
        assert log.size_bytes == reference_size(kept, prefix)
        assert log.after(kept[0][0] - 1) == kept
    assert len(grown) < 50  # told in steps of about 4 KiB, not at each of 499 events
    log.end()
    assert sum(grown) == log.size_bytes  # the registry was told every change
    if prefix is not None:  # the numbers of whole events leave with their events
        assert log._whole == {seq for seq, _ in everything[-50:] if seq % 7 == 0}


def test_trim_drops_only_events_read() -> None:
    log = EventLog(100, id_prefix=PREFIX)
    log.extend(events(1, 10))
    assert log._trim(10**9) == 0  # nothing read yet
    log._mark_read(4)
    before = log.size_bytes
    freed = log._trim(10**9)
    assert freed == reference_size(events(1, 4), PREFIX)
    assert log.size_bytes == before - freed == reference_size(events(5, 10), PREFIX)
    assert log.after(4) == events(5, 10)
    log._mark_read(10)
    one = reference_size(events(5, 5), PREFIX)
    assert log._trim(1) == one  # stops once enough is freed
    assert log.after(5) == events(6, 10)
    assert log._trim(10**9) == reference_size(events(6, 10), PREFIX)
    assert len(log) == 0 and log.size_bytes == 0 and len(log._buf) == 0
    assert log.after(10) == []
    with pytest.raises(ResumeError):
        log.after(9)
    log.append(11, event(11))  # numbering goes on after an empty log
    assert log.after(10) == events(11, 11)


def test_a_bad_batch_records_nothing() -> None:
    log = EventLog(10, id_prefix=PREFIX)
    log.extend(events(1, 2))
    size = log.size_bytes
    with pytest.raises(ValueError, match="does not follow event 3"):
        log.extend([(3, event(3)), (5, event(5))])
    with pytest.raises(ValueError, match="does not follow event 2"):
        log.append(2, event(2))
    assert log.last_seq == 2 and len(log) == 2 and log.size_bytes == size
    assert log.after(0) == events(1, 2)


def test_bad_id_prefix() -> None:
    with pytest.raises(TypeError):
        EventLog(10, id_prefix=b"key.")  # type: ignore[arg-type]
    for bad in ("a\nb.", "a\rb.", "a\0b."):
        with pytest.raises(ValueError):
            EventLog(10, id_prefix=bad)


@pytest.mark.parametrize("prefix", [None, PREFIX])
def test_size_is_what_the_log_takes(prefix: Optional[str]) -> None:
    """size_bytes against tracemalloc: the log's buffer and lengths, 2,000 events."""
    recorded = events(1, 2000)
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.take_snapshot()
        log = EventLog(10_000, id_prefix=prefix)
        log.extend(recorded[:1])
        for item in recorded[1:]:
            log.append(*item)
        gc.collect()
        used = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(start, "filename"))
    finally:
        tracemalloc.stop()
    size = log.size_bytes
    assert used - 4096 <= size <= 1.3 * used  # honest: neither far below nor far above
    old_cost = sum(len(data) + 96 for _, data in recorded)  # the deque of tuples's count
    assert size < old_cost / (2 if prefix is None else 4)


def test_a_reader_beside_the_writer() -> None:
    """The owner appends while a resuming reader reads (the log's lock): the reader
    gets every event once, in order, as recorded."""
    log = EventLog(100_000, id_prefix=PREFIX)
    recorded = events(1, 5000)
    done = threading.Event()
    got: List[bytes] = []
    errors: List[BaseException] = []

    def read() -> None:
        cursor = 0
        try:
            while cursor < 5000:
                last, data = log._read_after(cursor)
                if data:
                    got.append(data)
                    cursor = last
                elif done.is_set() and log.last_seq == cursor:
                    break
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    for k in range(0, 5000, 3):
        log.extend(recorded[k:k + 3])
    done.set()
    reader.join(30)
    assert not reader.is_alive() and not errors
    assert b"".join(got) == b"".join(d for _, d in recorded)


def test_an_event_longer_than_64_kib_widens_the_lengths() -> None:
    log = EventLog(3, id_prefix=PREFIX)
    log.extend(events(1, 2))
    assert log._lens.typecode == "H"
    big = event(3, "x" * 70_000)
    log.append(3, big)
    assert log._lens.typecode == "I"
    log.extend(events(4, 5))
    assert log.after(2) == [(3, big), *events(4, 5)]
    assert log.size_bytes == reference_size([(3, big), *events(4, 5)], PREFIX)
    log.extend(events(6, 8))  # the long one dropped: the lengths stay wide
    assert log.after(5) == events(6, 8)
    assert log.size_bytes == reference_size(events(6, 8), PREFIX)


def test_a_registry_streams_events_are_given_to_its_log_with_their_id_length() -> None:
    replay = hs.SSEReplay()
    body = hs.sse_stream(["a ", "b "], replay=replay)
    next(body)
    feed = body._reader._entry.feed  # noqa: SLF001
    assert feed._id_len == len(f"id: {body.stream_id}.\n\n")  # noqa: SLF001
    rest = b"".join(body)
    assert b"data: a \nid: " in rest or b"data: b \nid: " in rest
    replay.close()


@pytest.mark.parametrize("prefix", [None, PREFIX])
def test_an_event_of_one_data_line_is_kept_as_its_text_and_rebuilt_exactly(prefix: Optional[str]) -> None:
    p = prefix or ""
    recorded = [
        (1, f"data: a word\nid: {p}1\n\n".encode()),  # the usual event: "a word" is kept
        (2, f"data: \nid: {p}2\n\n".encode()),  # an empty data line
        (3, f"data: a\rb\nid: {p}3\n\n".encode()),  # whatever the line holds comes back
        (4, f"event: done\ndata: [DONE]\nid: {p}4\n\n".encode()),  # not one data line
        (5, f"data: one\ndata: two\nid: {p}5\n\n".encode()),  # two: "data: " at the start
        (6, b"data: no id of ours\n\n"),  # kept whole with a prefix, then as text
        (7, b"data:x\n"),  # no space after the colon: kept as it came
        (8, f"data: \xe9t\xe9\nid: {p}8\n\n".encode()),
    ]
    log = EventLog(100, id_prefix=prefix)
    for seq, data in recorded:
        log.append(seq, data)
    for seq in range(9):
        assert log.after(seq) == recorded[seq:]
        assert log._read_after(seq)[1] == b"".join(d for _, d in recorded[seq:])
    if prefix is not None:
        # the first event keeps 6 bytes: "a word"
        assert bytes(log._buf).startswith(b"a word")
        assert log.size_bytes == reference_size(recorded, prefix)


def test_an_id_length_alone_promises_nothing_about_the_rest_of_the_event() -> None:
    # found in review: a caller that gives only the id line's length (append's contract
    # before data_line) with an event that is not one data line got it back changed
    log = EventLog(10, id_prefix=PREFIX)
    recorded = [
        (1, f"event: tok\ndata: hi\nid: {PREFIX}1\n\n".encode()),
        (2, f": a comment\nid: {PREFIX}2\n\n".encode()),
        (3, f"data: plain\nid: {PREFIX}3\n\n".encode()),
    ]
    for seq, data in recorded:
        log.append(seq, data, len(f"id: {PREFIX}{seq}\n\n"))
    assert log.after(0) == recorded
    # with data_line, the third is taken as one data line without a look
    told = EventLog(10, id_prefix=PREFIX)
    first = f"data: plain\nid: {PREFIX}1\n\n".encode()
    told.append(1, first, len(f"id: {PREFIX}1\n\n"), True)
    assert bytes(told._buf) == b"plain" and told.after(0) == [(1, first)]
