"""What every service needs, built once per process: settings, store, clock, pseudonyms, metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from prefcenter.config import Settings
from prefcenter.domain.policy import LoadedPolicy
from prefcenter.domain.pseudonyms import Pseudonymizer
from prefcenter.store.base import Store


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.http_requests = Counter(
            "prefcenter_http_requests",
            "HTTP requests by route template, method and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_seconds = Histogram(
            "prefcenter_http_request_seconds",
            "HTTP request latency by route template",
            ["route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )
        self.decisions = Counter(
            "prefcenter_decisions",
            "Gate decisions (real, not dry runs) by verdict and reason",
            ["verdict", "reason"],
            registry=self.registry,
        )
        self.dispatched = Counter(
            "prefcenter_dispatched",
            "Dispatcher outcomes by channel: sent, retried, failed, bounced (address suppressed), "
            "and, at re-gate, withdrawn, suppressed and deferred",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.outbox_depth = Gauge(
            "prefcenter_outbox_depth",
            "Messages waiting in the outbox (queued or deferred), read at scrape time",
            registry=self.registry,
        )
        self.inbound_review_overdue = Gauge(
            "prefcenter_inbound_review_overdue",
            "Inbound texts kept for review, still open after their due date (10 US business days after "
            "receipt), read at scrape time",
            registry=self.registry,
        )
        self.consent_events = Counter(
            "prefcenter_consent_events",
            "Consent ledger events appended, by source and action",
            ["source", "action"],
            registry=self.registry,
        )
        self.webhook_deliveries = Counter(
            "prefcenter_webhook_deliveries",
            "Webhook delivery attempts by outcome: delivered, retried, failed",
            ["outcome"],
            registry=self.registry,
        )
        self.webhook_pending = Gauge(
            "prefcenter_webhook_pending",
            "Webhook deliveries pending (read by the deliverer)",
            registry=self.registry,
        )
        self.webhook_failed = Gauge(
            "prefcenter_webhook_failed",
            "Webhook deliveries failed (read by the deliverer)",
            registry=self.registry,
        )


@dataclass
class Runtime:
    settings: Settings
    store: Store
    pseudonyms: Pseudonymizer
    policy: LoadedPolicy | None = None
    now: Callable[[], datetime] = system_clock
    metrics: Metrics = field(default_factory=Metrics)
