"""``python -m reidkit``: the same as the ``reidkit`` command (torchrun needs this form)."""

from reidkit.cli import main

if __name__ == "__main__":
    main()
