"""``python -m prefcenter``: the ``prefcenter`` command."""

from prefcenter.cli import main

main()
