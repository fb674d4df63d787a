"""What every role and service shares; imports only :mod:`schemas` and third-party code.

- :mod:`shadowlab.core.errors`: the one error tree, drawn in its docstring.
- :mod:`shadowlab.core.settings` (with the rollout plan, :mod:`shadowlab.core.plan`): the
  settings every role reads, from the environment, ``.env`` and YAML.
- :mod:`shadowlab.core.kafka`: client configuration, topics, and the role plumbing: the
  dead-letter contract and the consume → process → flush → commit loop.
- :mod:`shadowlab.core.headers`: HTTP header names on the wire.
- :mod:`shadowlab.core.role`: the :class:`~shadowlab.core.role.Role` protocol.
- :mod:`shadowlab.core.gcpause`: pausing the cyclic collector around batch work.

Nothing is imported here, so ``import producers`` (which needs only the errors and the Kafka
configuration) loads neither pydantic-settings nor YAML.
"""
