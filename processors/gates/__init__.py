"""Gates and the rollout controller.

- :mod:`processors.gates.stats`: anytime-valid intervals (pure).
- :mod:`shadowlab.core.plan`: what is gated and how (the YAML settings, the user's defaults).
- :mod:`processors.gates.evaluate`: a gate's outcome from sufficient statistics (pure).
- :mod:`processors.gates.metrics`: which evaluator each (stage, metric) uses (pure).
- :mod:`processors.gates.controller`: the rollout state machine (pure).
- :mod:`processors.gates.queries`: the ClickHouse queries that feed the evaluation.
- :mod:`processors.gates.role`: ``shadowlab run gates``, the I/O shell around all of it.

This package's ``__init__`` stays import-light: :mod:`shadowlab.core.settings` imports the plan.
"""
