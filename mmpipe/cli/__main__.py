"""``python -m mmpipe.cli``: the same as the ``mmpipe`` command."""

from mmpipe.cli import main

main()
