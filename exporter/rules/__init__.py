"""Prometheus rules as data.

The project's alerts are declared once (``alerts``), with the thresholds that the rules file, the
dashboards and the docs share; the recording rules sit beside them (``recording``). SLO rules are
generated from a small file of objectives (``slo`` reads it, ``slo_rules`` writes the rules). The
``yamlout`` module writes any of these as a Prometheus rules file.
"""
