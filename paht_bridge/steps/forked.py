"""What a step's forked helper process needs: a safe start and end, its logs sent home, its
errors made sendable. Used by the deliver step's call process and ingest's read-ahead.

The child inherits the step's clients (the Connections already read through Airflow) and
never talks to Airflow's supervisor or the ledger itself. It drops the HTTP connections it
inherited (``connectors.http``), never collects or finalizes the parent's objects (a
finalized database connection would say goodbye to the server on the parent's behalf), and
ends with ``os._exit``. Its log records travel back with its answers and are logged by the
step, through the task's own handlers and masker.
"""

from __future__ import annotations

import gc
import logging
import os
import pickle
import signal
import time
import traceback
from collections.abc import Callable
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger("paht_bridge.steps")

_RECORD_FIELDS = ("name", "levelno", "levelname", "pathname", "filename", "module", "lineno", "funcName", "created", "msecs",
                  "relativeCreated", "thread", "threadName", "process", "processName", "exc_text", "stack_info")


def start(serve: Callable[[Connection, list[dict[str, Any]]], None]) -> tuple[int, Connection]:
    """Fork a child running ``serve(its end of the pipe, its log records so far)``; the child's pid and our end."""
    ours, theirs = Pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            ours.close()
            gc.freeze()  # the parent's objects are never collected (nor finalized) here
            serve(theirs, _capture_logs())
            code = 0
        except (EOFError, BrokenPipeError):  # the step is gone: nothing left to do
            code = 0
        except BaseException:  # noqa: BLE001 - the step sees the pipe close; the reason goes to stderr (the task log)
            traceback.print_exc()
        finally:
            os._exit(code)
    theirs.close()
    return pid, ours


def stop(pid: int, conn: Connection, wait: float) -> None:
    """Tell the child to end (``None``) and reap it; killed if it is not done within ``wait``
    seconds (at once with 0)."""
    try:
        conn.send(None)
    except OSError:
        pass
    conn.close()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return
        time.sleep(0.005)
    if wait:
        log.error("a helper process did not end within %ss; killed pid=%s", wait, pid)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def relog(entries: list[dict[str, Any]]) -> None:
    """Log here what the child logged there."""
    for entry in entries:
        logging.getLogger(entry["name"]).handle(logging.makeLogRecord(entry))


def sendable(error: Exception) -> BaseException:
    """The error as raised if it pickles (ours do), else a RuntimeError naming it; either way
    with its traceback as text (``child_traceback``), for the step's log."""
    error.child_traceback = "".join(traceback.format_exception(error))  # type: ignore[attr-defined]
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - any error of a library that does not pickle
        plain = RuntimeError(f"{error.__class__.__name__}: {error}")
        plain.child_traceback = error.child_traceback  # type: ignore[attr-defined]
        return plain


def taken(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records kept so far, emptied for the next answer."""
    out = list(records)
    records.clear()
    return out


def _capture_logs() -> list[dict[str, Any]]:
    """Route every log record of the child into a list its answers carry back: the child must
    not write to the task's log channel beside the step."""
    records: list[dict[str, Any]] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            entry = {key: getattr(record, key, None) for key in _RECORD_FIELDS}
            entry["msg"] = record.getMessage()
            if record.exc_info:
                entry["exc_text"] = "".join(traceback.format_exception(*record.exc_info))
            records.append(entry)

    for logger in logging.root.manager.loggerDict.values():
        if isinstance(logger, logging.Logger):
            logger.handlers, logger.propagate = [], True
    logging.getLogger().handlers = [_Keep()]
    return records
