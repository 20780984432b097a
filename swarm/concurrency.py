"""Structured-concurrency pieces shared by every service of a node."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio


@asynccontextmanager
async def open_nursery() -> AsyncIterator[trio.Nursery]:
    """A trio nursery whose lone failure is raised as itself, not inside a group.

    Nurseries are an implementation detail of the services that own them; callers should
    see ``ModuleError``, not ``ExceptionGroup[ExceptionGroup[ModuleError]]``. Several
    concurrent failures still arrive as a group.
    """
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        lone: BaseException = group
        while isinstance(lone, BaseExceptionGroup) and len(lone.exceptions) == 1:
            lone = lone.exceptions[0]
        if lone is group:
            raise
        raise lone from lone.__cause__
