"""Scrapes a Prometheus endpoint and prints its samples as one JSON object:
sample name with sorted labels -> value. Parsed by prometheus_client's own parser.

    scrape_metrics.py URL
"""
import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

text = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
out = {}
for family in text_string_to_metric_families(text):
    for s in family.samples:
        labels = ",".join("%s=%s" % kv for kv in sorted(s.labels.items()))
        out[s.name + ("{" + labels + "}" if labels else "")] = s.value
json.dump(out, sys.stdout)
