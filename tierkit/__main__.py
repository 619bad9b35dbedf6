"""`python -m tierkit` runs the CLI."""

from tierkit.cli import main

main()
