"""Parses a Prometheus text exposition (stdin) with the official client's parser and prints
every sample as JSON: [{"name", "labels", "value", "family", "type"}]. A text the parser rejects
exits non-zero with its error."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        samples.append({"name": s.name, "labels": s.labels, "value": s.value, "family": family.name, "type": family.type})
json.dump(samples, sys.stdout)
