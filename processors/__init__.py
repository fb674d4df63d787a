"""The long-running stream roles and the offline evaluation.

- :mod:`processors.shadow`: replays production requests to candidate models.
- :mod:`processors.join`: joins each request with its candidates' results (faust).
- :mod:`processors.judge`: the sampled LLM judge (faithfulness, pairwise preference).
- :mod:`processors.gates`: the gate statistics, queries and the rollout controller.
- :mod:`processors.evaluation`: ``shadowlab eval`` on a golden set (the offline gate).
"""
