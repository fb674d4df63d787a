"""The suite runs on real parts: see :mod:`shadowlab.testing.pytest_plugin` for the fixtures."""

pytest_plugins = ["shadowlab.testing.pytest_plugin"]
