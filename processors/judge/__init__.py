"""The LLM-as-judge: faithfulness (RAGAS manner) and pairwise preference, online and offline.

- :mod:`processors.judge.prompts`: the judge prompts and their JSON protocol (pure).
- :mod:`processors.judge.faithfulness`: :func:`~processors.judge.faithfulness.judge_faithfulness`,
  claims extracted, then verified against the context; scored 1–5 or not at all.
- :mod:`processors.judge.pairwise`: :func:`~processors.judge.pairwise.judge_pairwise`, the
  preference between a primary and a candidate answer, asked in both orders.
- :mod:`processors.judge.pending`: requests and shadow results waiting for each other (pure).
- :mod:`processors.judge.role`: ``shadowlab run judge``, the sampled online judge.

This package's ``__init__`` stays import-light: the simulator imports the prompts.
"""
