"""Kubernetes: the work pool's base job template, the chart's hook commands, deploy checks,
setup of pool, limits and automations, tuning job variables."""
