"""Prometheus metrics: request counts by model and status, plus each deployment's engine numbers."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


class EngineCollector:
    def __init__(self, engines: dict):
        self.engines = engines

    def collect(self):
        running = GaugeMetricFamily("moonserve_sequences_running", "Sequences being decoded", labels=["deployment"])
        waiting = GaugeMetricFamily("moonserve_sequences_waiting", "Sequences queued for a slot", labels=["deployment"])
        generated = CounterMetricFamily("moonserve_generated_tokens", "Tokens sampled", labels=["deployment"])
        prefilled = CounterMetricFamily(
            "moonserve_prompt_tokens_computed", "Prompt tokens run through the model", labels=["deployment"]
        )
        for name, engine in self.engines.items():
            s = engine.stats()
            running.add_metric([name], s.get("running", 0))
            waiting.add_metric([name], s.get("waiting", 0))
            generated.add_metric([name], s.get("tokens_generated", 0))
            prefilled.add_metric([name], s.get("prompt_tokens_computed", 0))
        yield from (running, waiting, generated, prefilled)


class Metrics:
    def __init__(self, engines: dict):
        self.registry = CollectorRegistry()
        self.registry.register(EngineCollector(engines))
        self.requests = Counter(
            "moonserve_requests", "Chat calls by model and HTTP status", ["model", "status"], registry=self.registry
        )
        self.ttft = Histogram(
            "moonserve_time_to_first_token_seconds", "Time from request to first delta", ["model"],
            registry=self.registry, buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
