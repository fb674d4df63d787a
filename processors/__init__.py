"""The long-running stream roles: shadow replay, join, judge, gates and the rollout controller.

(Built by later issues; this package is importable from the start so the layout and the
distribution are fixed.)
"""
