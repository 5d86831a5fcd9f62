"""``python -m durable`` and the ``durable`` console script.

The command line needs the ``web`` extra (typer, rich; uvicorn and starlette to serve). Without
it, ``durable`` says so in one line and exits 2, instead of a traceback from an import.
"""

import sys

_WEB_EXTRA = frozenset({"typer", "click", "rich", "uvicorn", "starlette", "sse_starlette"})


def main() -> None:
    try:
        from ._cli import main as cli
    except ImportError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in _WEB_EXTRA:
            raise
        print(
            f"durable: the command line needs the 'web' extra ({missing} is not installed): "
            "pip install 'durable-workflows[web]'",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    cli()


if __name__ == "__main__":
    main()
