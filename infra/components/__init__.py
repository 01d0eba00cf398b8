"""One ``ComponentResource`` per concern; ``infra/program.py`` wires them together."""
