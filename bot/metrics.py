"""Prometheus metrics of one service process, served at ``/metrics``.

Counters and histograms are updated where things happen (sends, ticks); the
outbox depth and age, each platform's failure streak and the count of handled
updates are read when scraped (from the database: every process reports the
same streak, and it survives a restart).
The registry belongs to the service instance, not to the module.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from core.clock import Clock
from core.inbox import counts as inbox_counts
from jobs.sender import OutgoingRow, outbox_depth, platform_health

if TYPE_CHECKING:
    from core.conversation import Conversation
    from core.runtime import Runtime


class _Live(Collector):
    """Figures read at scrape time: outbox depth and age, inbox rows pending and failed, updates handled."""

    def __init__(
        self,
        runtime: Runtime,
        conversation: Conversation,
        send_clock: Clock,
        platforms: list[str],
        alert_after: timedelta,
    ) -> None:
        self.runtime = runtime
        self.conversation = conversation
        self.send_clock = send_clock  # the sender's: the streaks are written in its time
        self.platforms = platforms
        self.alert_after = alert_after

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        depth = GaugeMetricFamily(
            "duban_outbox_messages", "Outbox rows by platform and state", labels=["platform", "state"]
        )
        age = GaugeMetricFamily(
            "duban_outbox_oldest_queued_seconds", "Age of the oldest queued row", labels=["platform"]
        )
        inbound = GaugeMetricFamily(
            "duban_inbound_updates", "Inbox rows waiting to be handled or given up", labels=["state"]
        )
        failing_seconds = GaugeMetricFamily(
            "duban_platform_failing_seconds",
            "How long the platform's sends have failed for a passing reason with no success (0: working)",
            labels=["platform"],
        )
        failing = GaugeMetricFamily(
            "duban_platform_failing",
            "1 when the platform has been failing for longer than [outbox] alert_after",
            labels=["platform"],
        )
        with self.runtime.sessions() as session:
            figures = outbox_depth(session, self.runtime.clock.now())
            for state, count in inbox_counts(session).items():
                inbound.add_metric([state], count)
            health = platform_health(session, self.send_clock.now(), self.platforms)
        for platform, streak in health.items():
            failing_seconds.add_metric([platform], streak.failing_seconds)
            failing.add_metric([platform], 1.0 if streak.failing_for_longer_than(self.alert_after) else 0.0)
        for platform, states in figures.items():
            for state, count in states.items():
                if state != "oldest_age_seconds":
                    depth.add_metric([platform, state], count)
            age.add_metric([platform], states.get("oldest_age_seconds", 0.0))
        yield depth
        yield age
        yield failing_seconds
        yield failing
        yield inbound
        handled = CounterMetricFamily("duban_updates", "Incoming updates handled", labels=["platform", "result"])
        for (platform, result), count in sorted(self.conversation.handled.items()):
            handled.add_metric([platform, result], count)
        yield handled


class Metrics:
    def __init__(
        self,
        runtime: Runtime,
        conversation: Conversation,
        *,
        send_clock: Clock,
        platforms: list[str],
        alert_after: timedelta,
    ) -> None:
        self.registry = CollectorRegistry()
        self.sends = Counter("duban_sends", "Outbox sends by outcome", ["platform", "outcome"], registry=self.registry)
        self.send_seconds = Histogram(
            "duban_send_seconds",
            "Time for one platform call",
            ["platform"],
            registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.tick_seconds = Histogram(
            "duban_tick_seconds",
            "Duration of a reminder tick",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.scheduler = Gauge("duban_scheduler", "1 when this process runs the scheduled jobs", registry=self.registry)
        self.registry.register(_Live(runtime, conversation, send_clock, platforms, alert_after))

    def record_send(self, row: OutgoingRow, outcome: str, seconds: float) -> None:
        self.sends.labels(row.platform, outcome).inc()
        self.send_seconds.labels(row.platform).observe(seconds)
