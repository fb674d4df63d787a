"""``python -m shadowlab`` runs the CLI."""

from shadowlab.cli import main

main()
