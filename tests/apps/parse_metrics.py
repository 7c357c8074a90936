"""Reads Prometheus text on stdin with the official client's parser and
prints each sample as JSON: {"name", "labels", "value"} per line. A parse
error exits non-zero."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        print(json.dumps({"name": sample.name, "labels": sample.labels, "value": sample.value}))
