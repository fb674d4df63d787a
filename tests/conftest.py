"""The suite runs on real parts: see :mod:`shadowlab.pytest_plugin` for the fixtures."""

pytest_plugins = ["shadowlab.pytest_plugin"]
