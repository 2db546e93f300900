"""Prometheus metrics: request counts by model and status, plus each deployment's engine numbers."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


# engine stat -> (metric name, kind, help)
ENGINE_METRICS = {
    "running": ("moonserve_sequences_running", "gauge", "Sequences being decoded"),
    "waiting": ("moonserve_sequences_waiting", "gauge", "Sequences queued for a slot"),
    "tokens_per_second": ("moonserve_generation_tokens_per_second", "gauge", "Tokens sampled per second, last second"),
    "kv_cells_used": ("moonserve_kv_cells_used", "gauge", "KV cache cells held by running sequences"),
    "kv_cells_total": ("moonserve_kv_cells_total", "gauge", "KV cache cells of the running slots"),
    "cache_entries": ("moonserve_prefix_cache_entries", "gauge", "Prefixes held by the implicit context cache"),
    "cache_bytes": ("moonserve_prefix_cache_bytes", "gauge", "Host memory held by the implicit context cache"),
    "cache_budget_bytes": ("moonserve_prefix_cache_budget_bytes", "gauge", "The context cache's memory budget"),
    "tokens_generated": ("moonserve_generated_tokens", "counter", "Tokens sampled"),
    "prompt_tokens_computed": ("moonserve_prompt_tokens_computed", "counter", "Prompt tokens run through the model"),
    "cache_hits": ("moonserve_prefix_cache_hits", "counter", "Requests that reused a cached prefix"),
    "cache_hit_tokens": ("moonserve_prefix_cache_hit_tokens", "counter", "Prompt tokens reused instead of computed"),
    "cache_evictions": ("moonserve_prefix_cache_evictions", "counter", "Prefixes evicted to stay in budget"),
    "up": ("moonserve_deployment_up", "gauge", "1 while an upstream deployment answers its health checks"),
    "failures": ("moonserve_upstream_failures", "counter", "Calls that found an upstream deployment down"),
    "prefills_offloaded": ("moonserve_prefills_offloaded", "counter",
                           "Prompts prefilled by the prefill worker beside running streams and handed back"),
    "shared_prefills": ("moonserve_shared_prefills", "counter",
                        "Prompts computed once for requests that arrived together sharing their prefix"),
    "draft_tokens": ("moonserve_draft_tokens", "counter", "Speculation: tokens drafted from the requests' own context"),
    "draft_tokens_accepted": ("moonserve_draft_tokens_accepted", "counter",
                              "Speculation: drafted tokens that the model's own draw confirmed"),
}


class EngineCollector:
    def __init__(self, engines: dict):
        self.engines = engines

    def collect(self):
        families = {}
        for stat, (name, kind, help_) in ENGINE_METRICS.items():
            cls = GaugeMetricFamily if kind == "gauge" else CounterMetricFamily
            families[stat] = cls(name, help_, labels=["deployment"])
        for deployment, engine in self.engines.items():
            stats = engine.stats()
            for stat, family in families.items():
                if stat in stats:
                    family.add_metric([deployment], stats[stat])
        yield from families.values()


class AccountsCollector:
    """The accounts database's state and the ledger journal's depth."""

    def __init__(self, database, journal):
        self.database, self.journal = database, journal

    def collect(self):
        up = GaugeMetricFamily("moonserve_database_up", "1 while the accounts database answers")
        up.add_metric([], int(self.database.up))
        pending = GaugeMetricFamily("moonserve_ledger_journal_pending",
                                    "Usage records journaled on this node, waiting for the database")
        pending.add_metric([], self.journal.pending)
        writable = GaugeMetricFamily("moonserve_ledger_journal_writable", "1 while the ledger journal can be written")
        writable.add_metric([], int(self.journal.writable))
        yield from (up, pending, writable)


class Metrics:
    def __init__(self, engines: dict, database=None, journal=None):
        self.registry = CollectorRegistry()
        self.registry.register(EngineCollector(engines))
        if database is not None:
            self.registry.register(AccountsCollector(database, journal))
        self.requests = Counter(
            "moonserve_requests", "Calls by model, HTTP status (200: admitted) and protocol",
            ["model", "status", "protocol"], registry=self.registry
        )
        self.ttft = Histogram(
            "moonserve_time_to_first_token_seconds", "Time from request to first delta", ["model", "protocol"],
            registry=self.registry, buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
