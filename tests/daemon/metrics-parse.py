#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Scrape URL and parse it with prometheus_client's text parser.

Prints one line per sample: name, uuid label, name label, value (tab
separated). Exits 1 if a family lacks HELP or TYPE, or the text does
not parse.
"""
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

with urllib.request.urlopen(sys.argv[1], timeout=10) as resp:
    if not resp.headers.get("Content-Type", "").startswith("text/plain; version=0.0.4"):
        sys.exit("bad content type: %s" % resp.headers.get("Content-Type"))
    text = resp.read().decode("utf-8")
for family in text_string_to_metric_families(text):
    if not family.documentation or family.type == "unknown":
        sys.exit("no HELP or TYPE: %s" % family.name)
    for s in family.samples:
        print("%s\t%s\t%s\t%d" % (s.name, s.labels.get("uuid", ""),
                                  s.labels.get("name", ""), int(s.value)))
