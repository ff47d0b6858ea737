"""The ``kvcache-calc`` command line: :func:`main` (:mod:`.commands`), with the ``simulate``
(:mod:`.simulate`) and ``replay`` (:mod:`.replay`) subcommands."""

from kvcache_calculator.cli.commands import main

__all__ = ["main"]
