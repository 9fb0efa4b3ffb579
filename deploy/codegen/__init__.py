"""Generators of the staging artefacts (recording rules, Grafana dashboards): `python deploy/generate.py`."""
