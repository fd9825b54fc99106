"""Entry points, one module per ``msl-ablate`` command: compose once, check once, call below.

Siblings: no command imports another; ``cli.py`` dispatches to them.
"""
