"""Pulumi entry point: all logic lives in tierkit.program."""

from tierkit.program import main

main()
