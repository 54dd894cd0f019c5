"""Compositions of the layers below: the small-set protocol (``small``). Nothing below ``cli.py`` and
``training/run.py`` (the run's entry point) imports this package."""
