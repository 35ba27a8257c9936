#!/usr/bin/env python3
"""Writes deploy/kubernetes/overlays/monitoring/prometheus-rule.yaml from
deploy/prometheus/alerts.yml, so the Prometheus Operator loads the same rules promtool tests.
tests/deploy checks that the two agree; rerun this after editing alerts.yml."""
import pathlib

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
alerts = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
rule = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "PrometheusRule",
    "metadata": {"name": "polytune", "labels": {"app.kubernetes.io/name": "polytune"}},
    "spec": {"groups": alerts["groups"]},
}
out = ROOT / "deploy/kubernetes/overlays/monitoring/prometheus-rule.yaml"
out.write_text("# Generated from deploy/prometheus/alerts.yml by scripts/gen-prometheus-rule.py; do not edit.\n"
               + yaml.safe_dump(rule, sort_keys=False, allow_unicode=True, width=120))
