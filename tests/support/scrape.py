"""Scraping a Prometheus endpoint in tests: GET it over HTTP and read the text with prometheus_client's
own parser, so a test sees exactly what Prometheus would."""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

Labels = frozenset[tuple[str, str]]


def labels(**pairs: str) -> Labels:
    return frozenset(pairs.items())


@dataclass(frozen=True)
class Scrape:
    """One scrape: sample name -> labels -> value."""

    samples: Mapping[str, Mapping[Labels, float]]
    text: str

    def value(self, name: str, **pairs: str) -> float:
        """The sample's value (0 when the series does not exist yet: a counter not yet incremented)."""
        return self.samples.get(name, {}).get(labels(**pairs), 0.0)

    def series(self, name: str) -> Mapping[Labels, float]:
        return self.samples.get(name, {})

    def since(self, before: Scrape, name: str, **pairs: str) -> float:
        """How much a counter grew between ``before`` and this scrape."""
        return self.value(name, **pairs) - before.value(name, **pairs)


def scrape(url: str, timeout: float = 10.0) -> Scrape:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        assert response.status == 200
        assert response.headers.get_content_type() == "text/plain"
        text = response.read().decode()
    samples: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return Scrape(samples, text)
