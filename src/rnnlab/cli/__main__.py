"""``python -m rnnlab.cli``: the same as the ``rnnlab`` console script."""

from rnnlab.cli import main

main(prog_name="rnnlab")
