"""The global rate limit: a token bucket per campaign, in Redis or in this process."""

import math
import threading
import time

from django.conf import settings

# --- The global rate limit -----------------------------------------------------------------

# A token bucket per campaign, refilled at `rate` tokens/s, holding at most `capacity`.
# Takes up to ARGV[3] tokens (at least one, else none) and returns {taken, 0}, or
# {0, milliseconds to wait} when not even one is there. A hold key (set after an
# ESP 429) makes every worker wait until it expires.
_BUCKET_LUA = """
local hold = redis.call('PTTL', KEYS[2])
if hold > 0 then return {0, hold} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
    tokens = capacity
    ts = now
end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate / 1000)
local want = tonumber(ARGV[3])
local taken = 0
local wait = 0
if tokens >= 1 then
    taken = math.min(want, math.floor(tokens))
    tokens = tokens - taken
else
    wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity * 1000 / rate) + 1000)
return {taken, wait}
"""


def _capacity(rate: int) -> int:
    return max(1, math.ceil(rate / 10))  # bursts of at most a tenth of a second


class _LocalLimiter:
    """The same bucket in this process, for the embedded mode (one process sends)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._buckets: dict[int, tuple[float, float]] = {}
        self._holds: dict[str, float] = {}
        self._slow: dict[str, float] = {}

    def take(self, campaign_id: int, rate: int, mailer: str) -> float:
        """One token: 0 when it was taken, else the seconds to wait."""
        return self.take_some(campaign_id, rate, mailer, 1)[1]

    def take_some(self, campaign_id: int, rate: int, mailer: str, want: int) -> tuple[int, float]:
        """Up to `want` tokens: (how many were taken, 0), or (0, the seconds to wait)."""
        now = time.monotonic()
        with self._lock:
            held = self._holds.get(mailer, 0) - now
            if held > 0:
                return 0, held
            capacity = _capacity(rate)
            tokens, ts = self._buckets.get(campaign_id, (capacity, now))
            tokens = min(capacity, tokens + (now - ts) * rate)
            if tokens >= 1:
                taken = min(want, math.floor(tokens))
                self._buckets[campaign_id] = (tokens - taken, now)
                return taken, 0
            self._buckets[campaign_id] = (tokens, now)
            return 0, (1 - tokens) / rate

    def hold(self, mailer: str, seconds: float) -> None:
        with self._lock:
            until = time.monotonic() + seconds
            self._holds[mailer] = max(self._holds.get(mailer, 0), until)

    def remember_slow(self, mailer: str, seconds: float) -> None:
        with self._lock:
            self._slow[mailer] = time.monotonic() + seconds

    def known_slow(self, mailer: str) -> bool:
        return self._slow.get(mailer, 0) > time.monotonic()


class _RedisLimiter:
    """One bucket per campaign in Redis, shared by every worker process."""

    def __init__(self):
        import django_rq

        self._redis = django_rq.get_connection("send")
        self._script = self._redis.register_script(_BUCKET_LUA)

    def _keys(self, campaign_id: int, mailer: str) -> list[str]:
        prefix = settings.SEND_REDIS_PREFIX
        return [f"{prefix}:bucket:{campaign_id}", f"{prefix}:hold:{mailer}"]

    def _slow_key(self, mailer: str) -> str:
        return f"{settings.SEND_REDIS_PREFIX}:slow:{mailer}"

    def take(self, campaign_id: int, rate: int, mailer: str) -> float:
        """One token: 0 when it was taken, else the seconds to wait."""
        return self.take_some(campaign_id, rate, mailer, 1)[1]

    def take_some(self, campaign_id: int, rate: int, mailer: str, want: int) -> tuple[int, float]:
        """Up to `want` tokens in one call: (how many were taken, 0), or (0, seconds to wait)."""
        taken, wait_ms = self._script(
            keys=self._keys(campaign_id, mailer), args=[rate, _capacity(rate), max(1, want)]
        )
        return int(taken), int(wait_ms) / 1000

    def hold(self, mailer: str, seconds: float) -> None:
        key = self._keys(0, mailer)[1]
        ms = max(1, int(seconds * 1000))
        current = self._redis.pttl(key)
        if current is None or current < ms:
            self._redis.set(key, "1", px=ms)

    def remember_slow(self, mailer: str, seconds: float) -> None:
        """Every worker's jobs start with their pool of threads for `seconds`."""
        self._redis.set(self._slow_key(mailer), "1", px=max(1, int(seconds * 1000)))

    def known_slow(self, mailer: str) -> bool:
        return bool(self._redis.exists(self._slow_key(mailer)))


_local_limiter = _LocalLimiter()


def limiter():
    return _RedisLimiter() if settings.REDIS_URL else _local_limiter
