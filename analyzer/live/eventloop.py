"""Running the live peers' coroutines without touching the caller's event loop settings.

``asyncio.run`` leaves the main thread with *no* current event loop when it returns (it calls
``set_event_loop(None)``), so later code that still calls ``asyncio.get_event_loop()`` (pyshark
does) fails with "There is no current event loop".  A live run is a library call, so it uses a
private loop and leaves the policy as it found it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_in_private_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion in a new loop; cancel what it left behind; close it.

    When the run fails or is interrupted, that error is the one raised: a failure while
    cleaning up after it (a socket already gone) must not replace it.
    """
    loop = asyncio.new_event_loop()
    try:
        result = loop.run_until_complete(coroutine)
    except BaseException:
        with contextlib.suppress(Exception):
            _shut_down(loop)
        loop.close()
        raise
    try:
        _shut_down(loop)
    finally:
        loop.close()
    return result


def _shut_down(loop: asyncio.AbstractEventLoop) -> None:
    # As asyncio.run does on the way out (asyncio/runners.py, _cancel_all_tasks), so a server
    # task interrupted by Ctrl-C still runs its cleanup.
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.run_until_complete(loop.shutdown_default_executor())
