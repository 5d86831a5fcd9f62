"""``python -m durable``: the same as the ``durable`` command."""

from ._cli import main

if __name__ == "__main__":
    main()
