"""Offline evaluation on a golden set (``shadowlab eval``): the pre-deployment gate."""
