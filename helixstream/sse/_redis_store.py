"""Where :class:`RedisReplay` keeps streams: the Redis keys and the calls on them (private).

One stream, named by its key ``<epoch><random>`` (the epoch: 6 hex digits, see below),
is kept in::

    {prefix}s:{key}        hash: "owner" (a digest of the owner binding), "proc" (the
                           id of the process that generates it)
    {prefix}s:{key}:ev     a Redis Stream: event n is entry "0-n", field "d" = its
                           bytes exactly as sent; after the last event an end marker
                           entry, field "end" = the outcome ("done", "error",
                           "cancelled", "shutdown", "lost")
    {prefix}s:{key}:att    a lease: present while a client reads the stream somewhere

    {prefix}p:{proc}       a process's heartbeat (expires 1.5 heartbeats after its
                           last refresh)
    {prefix}p:{proc}:cancels
                           a set: the keys of its streams a ``cancel`` asked it to stop
                           (pub/sub is at-most-once: a listener that was reconnecting
                           missed the message; the owner takes this set at every tick)
    {prefix}epoch          the epoch of the data set: 6 random hex digits, created
                           when missing
    {prefix}control        the pub/sub channel: "cancel <key>", "attach <key>"

Events are entries ``0-n`` so that "the events after id n" is ``XRANGE (0-n +`` and
"follow after n" is ``XREAD ... 0-n``, with no table between the two numberings.

The epoch is what turns lost data into a clear answer: a stream's key starts with the
epoch it was created in; when Redis loses its data (a ``FLUSHALL``, a restart without
persistence), the epoch key goes with it and is created again with another value, so a
resume whose key names another epoch answers ``events_expired`` instead of
``unknown_event_id`` (or, worse, a silent new start).
"""
from __future__ import annotations

import hashlib
import importlib
import re
import secrets
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type

from .._redis import redis_errors as _redis_errors
from .._redis import redis_module
from .._errors import ConfigError

__all__ = ["RedisStore", "Entry", "parse_event_id", "redis_errors", "make_client"]

#: An event id's number longer than this is not one we issued.
MAX_SEQ_DIGITS = 18
EPOCH_CHARS = 6
_KEY = re.compile(r"[0-9a-f]{6}[A-Za-z0-9_-]{12}\Z")

#: One entry of a stream, as read: ``(seq, data, end)``: an event (``end`` None) or
#: the end marker (``data`` empty, ``end`` the outcome).
Entry = Tuple[int, bytes, Optional[str]]


def parse_event_id(last_event_id: str) -> Optional[Tuple[str, int]]:
    """``"<key>.<n>"`` as ``(key, n)``, or None when it is not an id we could have
    issued. The number is read only up to 18 ASCII digits: client data is never
    handed to ``int()`` unbounded."""
    if not isinstance(last_event_id, str) or len(last_event_id) > 64:
        return None
    key, _, number = last_event_id.rpartition(".")
    if (
        not _KEY.match(key)
        or not 0 < len(number) <= MAX_SEQ_DIGITS
        or not number.isascii()
        or not number.isdigit()
    ):
        return None
    return key, int(number)


def owner_digest(owner: Any) -> str:
    """What the store keeps of an owner binding: a digest of its type and value (a
    session or user id is not written to Redis as such)."""
    text = f"{type(owner).__name__}:{owner!s}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def redis_errors() -> Tuple[Type[BaseException], ...]:
    """What a call may raise when Redis cannot be reached, or answers garbage."""
    return _redis_errors(answers=True)


def make_client(url_or_client: Any, timeout: float, block: float) -> Any:
    """A client for a URL (bytes replies; socket timeouts that bound every call, a
    blocking read's ``block`` included), or the caller's own client."""
    if isinstance(url_or_client, str):
        redis = redis_module("RedisReplay")
        return redis.Redis.from_url(
            url_or_client,
            socket_timeout=timeout + block,
            socket_connect_timeout=timeout,
            decode_responses=False,
            protocol=2,  # RESP2 replies parse faster (measured: 19 against 49 µs per XADD)
            # each follower holds a connection while it waits in XREAD (redis-py's
            # default of 100 would refuse the 101st client reading a resumed stream)
            max_connections=10_000,
        )
    if not callable(getattr(url_or_client, "xadd", None)) or not callable(
        getattr(url_or_client, "pipeline", None)
    ):
        raise TypeError(
            "url_or_client must be a Redis URL or a redis.Redis client, not "
            f"{type(url_or_client).__name__}"
        )
    redis_module("RedisReplay")
    return url_or_client


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):  # a client made with decode_responses=True
        return value.encode("utf-8", "surrogatepass")
    return str(value).encode("ascii")


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _seq_of(entry_id: Any) -> int:
    ms, _, seq = _text(entry_id).partition("-")
    if ms != "0":  # pragma: no cover - we only write 0-n
        raise ValueError(f"unexpected stream entry id {entry_id!r}")
    return int(seq)


def _entries(raw: Sequence[Any]) -> List[Entry]:
    out: List[Entry] = []
    for entry_id, fields in raw:
        fields = {_text(k): v for k, v in fields.items()}
        seq = _seq_of(entry_id)
        if "end" in fields:
            out.append((seq, b"", _text(fields["end"])))
        else:
            out.append((seq, _bytes(fields.get("d", b"")), None))
    return out


class StreamState:
    """What a resume learns about a stream in one round trip."""

    __slots__ = ("epoch", "meta", "after", "first", "last")

    def __init__(
        self,
        epoch: Optional[str],
        meta: Dict[str, str],
        after: List[Entry],
        first: Optional[Entry],
        last: Optional[Entry],
    ) -> None:
        self.epoch = epoch  # the data set's epoch now
        self.meta = meta  # the stream's hash (empty: unknown)
        self.after = after  # the first entries after the client's id
        self.first = first  # the oldest entry kept
        self.last = last  # the newest entry


class RedisStore:
    """The Redis calls of a :class:`RedisReplay`; every method is one round trip."""

    def __init__(self, client: Any, prefix: str, *, max_events: int, ttl: float, lease: float) -> None:
        if not isinstance(prefix, str):
            raise ConfigError(f"'prefix' must be a string (got {prefix!r})")
        self.client = client
        self.prefix = prefix
        self.max_events = max_events
        self.ttl_ms = max(1, int(ttl * 1000))
        self._cap = b"%d" % max_events
        self.lease_ms = max(1, int(lease * 1000))
        self.channel = prefix + "control"
        self._response_error = importlib.import_module("redis.exceptions").ResponseError
        self._epoch_key = prefix + "epoch"

    # --- names ---------------------------------------------------------------------------
    def meta_key(self, key: str) -> str:
        return f"{self.prefix}s:{key}"

    def events_key(self, key: str) -> str:
        return f"{self.prefix}s:{key}:ev"

    def lease_key(self, key: str) -> str:
        return f"{self.prefix}s:{key}:att"

    def proc_key(self, proc: str) -> str:
        return f"{self.prefix}p:{proc}"

    def cancels_key(self, proc: str) -> str:
        return f"{self.prefix}p:{proc}:cancels"

    def request_cancel(self, key: str, proc: str, message: str) -> int:
        """Ask process ``proc`` to stop stream ``key``: recorded in its cancels set (kept
        ``ttl``), then published; returns how many listeners got the message."""
        pipe = self.client.pipeline(transaction=False)
        cancels = self.cancels_key(proc)
        pipe.sadd(cancels, key)
        pipe.pexpire(cancels, self.ttl_ms)
        pipe.publish(self.channel, message.encode("ascii"))
        return int(pipe.execute()[2])

    def take_cancels(self, proc: str) -> List[str]:
        """The streams a cancel asked process ``proc`` to stop, taken (atomically)."""
        got = self.client.spop(self.cancels_key(proc), 10_000)
        return [_text(key) for key in got or ()]

    # --- the epoch -----------------------------------------------------------------------
    def epoch(self) -> str:
        """The data set's epoch, created if missing (by whoever comes first)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self._epoch_key, secrets.token_hex(EPOCH_CHARS // 2), nx=True)
        pipe.get(self._epoch_key)
        return _text(pipe.execute()[1])

    # --- the owner's side ----------------------------------------------------------------
    def create(self, key: str, owner: Any, proc: str, heartbeat_ms: int) -> str:
        """Record a new stream (and refresh the process's heartbeat, so that a follower
        never finds a new stream without a live producer); return the epoch now (the
        caller makes the stream again when its key names another one)."""
        pipe = self.client.pipeline(transaction=False)
        meta = self.meta_key(key)
        pipe.set(self._epoch_key, secrets.token_hex(EPOCH_CHARS // 2), nx=True)
        pipe.get(self._epoch_key)
        pipe.hset(meta, mapping={"owner": owner_digest(owner), "proc": proc})
        pipe.pexpire(meta, self.ttl_ms)
        pipe.set(self.proc_key(proc), b"1", px=heartbeat_ms)
        got = pipe.execute()
        if _text(got[1]) != key_epoch(key):
            self.client.delete(meta)
        return _text(got[1])

    def encode_create(self, key: str, owner: Any, proc: str, heartbeat_ms: int) -> List[bytes]:
        """:meth:`create`'s writes as commands (RESP), for the registry's writer once
        the epoch is known."""
        meta = self.meta_key(key).encode("utf-8")
        return [
            _command(b"HSET", meta, b"owner", owner_digest(owner).encode("ascii"),
                     b"proc", proc.encode("utf-8")),
            _command(b"PEXPIRE", meta, b"%d" % self.ttl_ms),
            _command(b"SET", self.proc_key(proc).encode("utf-8"), b"1", b"PX", b"%d" % heartbeat_ms),
        ]

    def connection(self) -> Any:
        """A connection of the client's pool, for one writer (see :meth:`append`)."""
        return self.client.connection_pool.get_connection()

    def release(self, conn: Any, broken: bool = False) -> None:
        if broken:
            conn.disconnect()
        self.client.connection_pool.release(conn)

    def encode(
        self,
        key: str,
        events: Sequence[Tuple[int, bytes]],
        end: Optional[str] = None,
        last: int = 0,
        heads: Optional[List[bytes]] = None,
    ) -> List[bytes]:
        """The commands (RESP) that add events to a stream (and, with ``end``, the end
        marker after them; ``last``: the number of the last event before these).

        The first write of a stream makes its events expire ``ttl`` later (the owner
        keeps a running stream's keys alive with :meth:`touch`); the end marker makes
        them all expire ``ttl`` after the end. Encoding here and writing many commands
        with one ``sendall`` costs a fraction of redis-py client calls (which take a
        pooled connection, encode and wait for each reply: 50-60 µs per ``XADD``).
        ``heads``: an empty list the caller keeps for the stream, where the part every
        XADD of the stream has in common is kept once encoded.
        """
        if not events and end is None:
            return []
        ev = self.events_key(key).encode("utf-8")
        first = last == 0 if not events else events[0][0] == 1
        commands: List[bytes] = []
        # only the first write may create the stream (it sets its expiry): a later one
        # finding it gone (a FLUSHALL, an expiry) must not make it again without one
        if events:
            # what every XADD of the stream has in common, encoded once: then one
            # format per event (its id and bytes) instead of one per argument
            if heads is None or not heads:
                made = [_command(b"XADD", ev, b"MAXLEN", b"~", self._cap),
                        _command(b"XADD", ev, b"NOMKSTREAM", b"MAXLEN", b"~", self._cap)]
                made = [b"*8" + made[0][made[0].index(b"\r\n"):],
                        b"*9" + made[1][made[1].index(b"\r\n"):]]
                if heads is not None:
                    heads.extend(made)
            else:
                made = heads
            head = made[0] if first else made[1]
            for seq, data in events:
                number = b"0-%d" % seq
                commands.append(
                    b"%b$%d\r\n%b\r\n$1\r\nd\r\n$%d\r\n%b\r\n"
                    % (head, len(number), number, len(data), data)
                )
            last = events[-1][0]
        if end is not None:
            commands.append(_command(b"XADD", ev, b"0-%d" % (last + 1), b"end", end.encode("ascii")))
        if first or end is not None:
            ttl = b"%d" % self.ttl_ms
            commands.append(_command(b"PEXPIRE", ev, ttl))
            commands.append(_command(b"PEXPIRE", self.meta_key(key).encode("utf-8"), ttl))
        return commands

    def read_replies(self, conn: Any, count: int) -> List[Optional[BaseException]]:
        """Read ``count`` replies; each is None, or the error Redis answered (a nil
        reply is one: an ``XADD NOMKSTREAM`` that found the stream gone)."""
        out: List[Optional[BaseException]] = []
        for _ in range(count):
            try:
                reply = conn.read_response()
            except self._response_error as exc:
                out.append(exc)
                continue
            out.append(None if reply is not None else self._response_error("the stream's key is gone"))
        return out

    def append(
        self,
        conn: Any,
        key: str,
        events: Sequence[Tuple[int, bytes]],
        end: Optional[str] = None,
        last: int = 0,
    ) -> None:
        """Send :meth:`encode`'s commands on ``conn`` (a connection of one writer at a
        time), then read every reply."""
        commands = self.encode(key, events, end, last)
        if not commands:
            return
        conn.send_packed_command([b"".join(commands)], check_health=False)
        for failure in self.read_replies(conn, len(commands)):
            if failure is not None:
                raise failure

    def append_once(
        self, key: str, events: Sequence[Tuple[int, bytes]], end: Optional[str] = None, last: int = 0
    ) -> None:
        """:meth:`append` on a connection taken from the pool for this call."""
        conn = self.connection()
        broken = True
        try:
            self.append(conn, key, events, end, last)
            broken = False
        except self._response_error:
            broken = False
            raise
        finally:
            self.release(conn, broken)

    def after_last(self, key: str) -> Optional[Entry]:
        """The newest entry of a stream (None: no entry)."""
        got = _entries(self.client.xrevrange(self.events_key(key), count=1))
        return got[0] if got else None

    def touch(self, keys: Sequence[str]) -> None:
        """Keep running streams' keys ``ttl`` longer (a stream silent for a long time
        must not expire while it runs)."""
        if not keys:
            return
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.pexpire(self.events_key(key), self.ttl_ms)
            pipe.pexpire(self.meta_key(key), self.ttl_ms)
        pipe.execute()

    def heartbeat(self, proc: str, heartbeat_ms: int, leases: Sequence[str], watch: Sequence[str]) -> Tuple[str, List[bool]]:
        """One tick of a process, one round trip: refresh its heartbeat and the leases
        of the streams it serves a client of; read the epoch and which of ``watch``
        (detached streams it owns) have a client somewhere."""
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.proc_key(proc), b"1", px=heartbeat_ms)
        pipe.set(self._epoch_key, secrets.token_hex(EPOCH_CHARS // 2), nx=True)
        pipe.get(self._epoch_key)
        for key in leases:
            pipe.set(self.lease_key(key), b"1", px=self.lease_ms)
        for key in watch:
            pipe.exists(self.lease_key(key))
        got = pipe.execute()
        return _text(got[2]), [bool(n) for n in got[3 + len(leases):]]

    def lease(self, key: str) -> None:
        self.client.set(self.lease_key(key), b"1", px=self.lease_ms)

    def forget_process(self, proc: str) -> None:
        self.client.delete(self.proc_key(proc), self.cancels_key(proc))

    def publish(self, message: str) -> int:
        return int(self.client.publish(self.channel, message.encode("ascii")))

    # --- the follower's side -------------------------------------------------------------
    def state(self, key: str, seq: int, count: int) -> StreamState:
        """What a resume after event ``seq`` of ``key`` needs, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        ev = self.events_key(key)
        pipe.get(self._epoch_key)
        pipe.hgetall(self.meta_key(key))
        pipe.xrange(ev, min=f"(0-{seq}", max="+", count=count)
        pipe.xrange(ev, min="-", max="+", count=1)
        pipe.xrevrange(ev, max="+", min="-", count=1)
        epoch, meta, after, first, last = pipe.execute()
        first_entries = _entries(first)
        last_entries = _entries(last)
        return StreamState(
            None if epoch is None else _text(epoch),
            {_text(k): _text(v) for k, v in (meta or {}).items()},
            _entries(after),
            first_entries[0] if first_entries else None,
            last_entries[0] if last_entries else None,
        )

    def read(self, key: str, seq: int, count: int, block_ms: int) -> List[Entry]:
        """The entries after ``seq``, waiting up to ``block_ms`` for one to come."""
        got = self.client.xread({self.events_key(key): f"0-{seq}"}, count=count, block=max(1, block_ms))
        if not got:
            return []
        if isinstance(got, dict):  # RESP3 replies
            return _entries(next(iter(got.values()))[0])
        return _entries(got[0][1])

    def after(self, key: str, seq: int, count: int) -> List[Entry]:
        return _entries(self.client.xrange(self.events_key(key), min=f"(0-{seq}", max="+", count=count))

    def alive(self, proc: str, key: str) -> Tuple[Optional[str], bool, Optional[Entry]]:
        """The epoch now, whether process ``proc`` is alive, and the newest entry of
        stream ``key`` (one round trip)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self._epoch_key)
        pipe.exists(self.proc_key(proc))
        pipe.xrevrange(self.events_key(key), count=1)
        epoch, exists, last = pipe.execute()
        newest = _entries(last)
        return (None if epoch is None else _text(epoch)), bool(exists), (newest[0] if newest else None)


def _command(*args: bytes) -> bytes:
    """One command in RESP: an array of bulk strings."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def key_epoch(key: str) -> str:
    return key[:EPOCH_CHARS]


def new_key(epoch: str) -> str:
    return epoch + secrets.token_urlsafe(9)
