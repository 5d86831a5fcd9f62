"""A child process that runs one generated program until the test SIGKILLs it.

Usage: ``python -m tests.property.crash_child DB_PATH PROGRAM_FILE RUN_ID``. The program file
holds the codec encoding of a :class:`programs.Program`. The child starts (or re-attaches to)
the run with that id on the SQLite file, resumes its hooks like the outside world would, and
waits for it to end.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

import durable
from durable._core import codec as _codec
from durable.stores._sqlite import SQLiteStore

from .harness import drive_hooks
from .mutants import apply_from_env
from .programs import CHILD_WORKFLOWS, Program, to_workflow


async def main(db_path: str, program_file: str, run_id: str) -> None:
    program = _codec.decode(Path(program_file).read_bytes())
    assert isinstance(program, Program)
    workflow = to_workflow(program)
    store = SQLiteStore(db_path, synchronous="normal")
    async with durable.Runtime(store, workflows=[workflow, *CHILD_WORKFLOWS], poll_interval=0.02, heartbeat_interval=0.1) as rt:
        run = await rt.start(workflow, run_id=run_id)
        async with anyio.create_task_group() as tg:
            tg.start_soon(drive_hooks, rt, run.run_id, program)
            await run.wait(timeout=60)
            tg.cancel_scope.cancel()


if __name__ == "__main__":
    apply_from_env()  # the mutation check's injected bug, if any, lives in this process too
    db_path, program_file, run_id = sys.argv[1:4]
    anyio.run(main, db_path, program_file, run_id)
