"""How fast a platform may be sent to, and the in-process half of keeping to it.

Every limit is kept with a margin, and measured on the time a request *leaves*:

* the overall rate is a schedule of slots (Telegram: 29 a second, one slot
  every 1/29 s, against the documented 30).  A slot is reserved before the
  send and is the time the request may start; a send that cannot start within
  ``late_tolerance`` of its slot (a loaded machine woke it late) gives the slot
  up and takes the next free one, so late sends never bunch up with on-time
  ones.  Evenly spaced slots then keep to the platform's limit as long as the
  jitter between leaving and arriving stays under the spare slot (1/29 s at
  29 of 30 a second);
* per chat, a minimum interval (Telegram: 1.05 s against the documented 1 s)
  and sliding windows (WeCom: 29 in any 61 s against 30 a minute, 990 in any
  3,601 s against 1,000 an hour; ``guard`` seconds are added to every window).
  A chat never has two requests in flight, and the earlier requests are
  counted from when their answers came back, so the interval between two
  requests *arriving* is at least the configured one whatever the jitter on
  the way.

On PostgreSQL several processes share the slots through the database (see
:mod:`jobs.sender`); the per-chat windows are then read from the outbox's own
departure times.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class SendLimits:
    """What a platform's sends are paced to: already below its documented limits."""

    per_second: float | None = None  # slots a second, over all chats
    per_chat_interval: float = 0.0  # seconds between two departures to one chat
    per_chat_windows: tuple[tuple[int, float], ...] = ()  # (count, seconds) per chat
    guard: float = 0.0  # seconds added to every per-chat window
    late_tolerance: float | None = None  # a send later than this after its slot takes a new one (half a slot)
    max_in_flight: int = 32  # never more requests awaiting answers than this, whatever the round trip

    def step(self) -> float:
        """Seconds between two slots of the overall rate (0 without one)."""
        return 1.0 / self.per_second if self.per_second else 0.0

    def lateness_allowed(self) -> float:
        """How late after its slot a send may still start: half a slot unless configured.

        Together with the jitter on the way it must stay under the spare slot
        the rate leaves below the platform's limit (1/29 s at 29 of 30 a second).
        """
        if self.late_tolerance is not None:
            return self.late_tolerance
        return self.step() / 2 if self.per_second else math.inf  # no schedule, nothing to bunch up with

    def windows(self) -> tuple[tuple[int, float], ...]:
        """The per-chat windows as measured: each with the guard added."""
        return tuple((count, seconds + self.guard) for count, seconds in self.per_chat_windows)

    def horizon(self) -> float:
        """How far back a chat's departures matter."""
        return max([self.per_chat_interval] + [seconds for _, seconds in self.windows()])


# Sends measured before more than one request may be out at a time.
ROUND_TRIPS_BEFORE_OVERLAP = 5
# Seconds of slots claimed ahead, so the next block is claimed while this one goes out.
CLAIM_AHEAD_SECONDS = 0.25


def below(limit: int) -> int:
    """A documented count limit with a margin: one under it, or 1% under for large ones (30 → 29, 1000 → 990)."""
    return max(1, limit - max(1, limit // 100))


class Pacer:
    """One platform's limits inside one process (monotonic time, in memory)."""

    def __init__(self, limits: SendLimits, now: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._now = now
        self._next_slot = float("-inf")
        self._chat_departures: dict[str, deque[float]] = {}
        self.paused_until = float("-inf")
        self._round_trips: deque[float] = deque(maxlen=100)  # seconds from leaving to the answer, latest sends

    # --- the overall rate -----------------------------------------------------------

    def reserve(self, count: int = 1) -> list[float]:
        """Take the next ``count`` slots of the schedule (monotonic times the sends may start).

        Slots are a schedule (each one interval after the last), not a gap after
        the previous send, so the time spent claiming and sending overlaps the
        wait instead of adding to it.
        """
        now = self._now()
        first = max(now, self._next_slot, self.paused_until)
        if not self.limits.per_second:
            return [first] * count
        step = self.limits.step()
        slots = [first + index * step for index in range(count)]
        self._next_slot = slots[-1] + step
        return slots

    def usable(self, slot: float) -> bool:
        """Whether a send may still start in ``slot`` now: not paused, and not late by more than the tolerance."""
        now = self._now()
        return slot >= self.paused_until and now - slot <= self.limits.lateness_allowed()

    def pause_wait(self) -> float:
        """Seconds until a 429 pause is over (0 when there is none)."""
        return max(0.0, self.paused_until - self._now())

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, self._now() + seconds)
        self._next_slot = max(self._next_slot, self.paused_until)

    # --- sends in flight ------------------------------------------------------------

    def observe_round_trip(self, seconds: float) -> None:
        self._round_trips.append(seconds)

    def outstanding_allowed(self) -> int:
        """How many requests may be out at once (left, outcome not yet written): about rate × round trip.

        The round trip is the shortest of the latest sends: the network's own
        latency, without the moments a loaded machine was slow to read an
        answer (the time to write the outcome down is not part of it either).  On loopback it stays one, so a crash repeats
        at most one message, as when sends went one at a time; more go out
        together only once a few round trips have shown the network is slow.
        """
        if not self.limits.per_second or len(self._round_trips) < ROUND_TRIPS_BEFORE_OVERLAP:
            return 1
        fastest = min(self._round_trips)
        return max(1, min(self.limits.max_in_flight, math.ceil(self.limits.per_second * fastest)))

    def capacity(self) -> int:
        """How many rows to hold claimed: those out, and a quarter second of slots waiting their turn.

        Claiming ahead hides the claim's own round trip (one transaction for the
        block); rows waiting for their slots have not left, so a crash does not
        repeat them.
        """
        if not self.limits.per_second:
            return 1
        return self.outstanding_allowed() + max(1, math.ceil(self.limits.per_second * CLAIM_AHEAD_SECONDS))

    # --- per chat -------------------------------------------------------------------

    def chat_wait(self, chat_id: str) -> float:
        """Seconds until a send to ``chat_id`` may leave."""
        departures = self._chat_departures.get(chat_id)
        if not departures:
            return 0.0
        now = self._now()
        wait = departures[-1] + self.limits.per_chat_interval - now
        for count, seconds in self.limits.windows():
            recent = [t for t in departures if t > now - seconds]
            if len(recent) >= count:
                wait = max(wait, recent[-count] + seconds - now)
        return max(0.0, wait)

    def blocked_chats(self) -> tuple[list[str], float]:
        """Chats that may not be sent to now, and the soonest one of them frees up."""
        blocked, soonest = [], float("inf")
        for chat_id in list(self._chat_departures):
            wait = self.chat_wait(chat_id)
            if wait > 0:
                blocked.append(chat_id)
                soonest = min(soonest, wait)
        self._forget_idle()
        return blocked, soonest

    def record(self, chat_id: str, calls: int = 1) -> None:
        """A request to ``chat_id`` leaves now (``calls`` platform calls for one row)."""
        now = self._now()
        departures = self._chat_departures.setdefault(chat_id, deque())
        departures.extend([now] * calls)
        horizon = self.limits.horizon()
        while len(departures) > 1 and departures[0] <= now - horizon:
            departures.popleft()

    def settle(self, chat_id: str, calls: int = 1) -> None:
        """The answer to the request to ``chat_id`` is back: its window is counted from now.

        The request reached the platform somewhere between leaving and the
        answer, so counting from the answer is never too early, whatever the
        jitter on the way (a chat never has two requests in flight).
        """
        departures = self._chat_departures.get(chat_id)
        if not departures:
            return
        now = self._now()
        for index in range(max(0, len(departures) - calls), len(departures)):
            departures[index] = now

    def _forget_idle(self) -> None:
        now = self._now()
        horizon = self.limits.horizon()
        for chat_id in [c for c, d in self._chat_departures.items() if not d or d[-1] < now - horizon]:
            del self._chat_departures[chat_id]
