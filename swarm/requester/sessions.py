"""Receiving one execution's results, from the first log chunk to the ack.

A ``ResultSession`` takes the result messages of one execution in order (the same
messages whether they arrive over a libp2p stream or, on a hybrid node, straight from
its own compute role): ``Log`` chunks while the guest runs, then ``RunEnd``, ``Outputs``
chunks and ``ResultEnd``. It writes them into the result store and, at the end, records
the execution as ``completed`` or ``failed`` and tells the requester.

A session that breaks before its end (the stream was cut, the node sent something out of
order or over the job's caps, the node was declared lost) is *lost*: its partial result
is removed and the requester decides whether to place the job again. It is never
half-recorded as completed. ``withdraw`` ends a session from the requester's side (the
job was stopped; what arrived so far is kept): its ``scope`` is cancelled, so whoever
feeds the session stops waiting for more.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from swarm.concurrency import StepsOnLoop
from swarm.errors import ProtocolError
from swarm.executor import RunResult, RunStatus
from swarm.lifecycle import ExecutionState
from swarm.protocol import Log, Outputs, ResultEnd, RunEnd
from swarm.requester.results import ResultWriter
from swarm.requester.store import ExecutionRecord, JobStore

# A 1 MiB outputs chunk of noise unpacks in ~0.3 ms of CPU into warm memory and ~2 ms into
# memory not touched before (measured on this VM); past UNPACK_CPU the rest of the result
# is unpacked in a thread, beside the loop that reads the stream.
UNPACK_CPU = 0.0015  # seconds


class ResultSession:
    def __init__(
        self,
        *,
        store: JobStore,
        execution: ExecutionRecord,
        writer: ResultWriter,
        on_log: Callable[[str], None],
        on_end: Callable[[ExecutionRecord, bool], None],
        on_lost: Callable[[ExecutionRecord, str], None],
    ) -> None:
        self.store = store
        self.execution = execution
        self.writer = writer
        self.scope = trio.CancelScope()
        self._on_log = on_log
        self._on_end = on_end
        self._on_lost = on_lost
        self._run_end: RunEnd | None = None
        self._unpacker = None
        self._unpacking = StepsOnLoop(slow_cpu=UNPACK_CPU)  # on the loop while quick
        self._over = False

    @property
    def over(self) -> bool:
        return self._over

    async def send(self, message: Log | RunEnd | Outputs | ResultEnd) -> None:
        """Take the next result message."""
        if self._over:
            raise ProtocolError("result message after the end of the result")
        if isinstance(message, Log):
            if self._run_end is not None:
                raise ProtocolError("log chunk after the run ended")
            self.writer.append(message.stream, message.data)
            self._on_log(self.execution.job_id)
        elif isinstance(message, RunEnd):
            if self._run_end is not None:
                raise ProtocolError("two run ends for one execution")
            self.writer.set_exit_code(_run_result(message).shell_exit_code)
            self._run_end = message
        elif isinstance(message, Outputs):
            if self._run_end is None:
                raise ProtocolError("outputs before the run ended")
            if self._unpacker is None:
                self._unpacker = self.writer.outputs()
            await self._unpacking.run(self._unpacker.feed, message.data, message.compressed)
        elif isinstance(message, ResultEnd):
            self._finish()

    def _finish(self) -> None:
        end = self._run_end
        if end is None:
            raise ProtocolError("the result ended before the run did")
        if self._unpacker is not None:
            self._unpacker.close()
        else:  # the guest wrote no outputs (or never ran): the folder is there all the same
            self.writer.empty_outputs()
        self.writer.close()
        self._over = True
        state = (
            ExecutionState.COMPLETED if end.status == RunStatus.COMPLETED else ExecutionState.FAILED
        )
        detail = end.message or (f"exit code {end.exit_code}" if end.exit_code is not None else "")
        result = (
            f"{end.status}, exit code {_run_result(end).shell_exit_code}, "
            f"{end.wall_seconds * 1000:.1f} ms, stdout {end.stdout_bytes} B, "
            f"outputs {end.outputs_bytes} B" + (f": {end.message}" if end.message else "")
        )
        execution = self.store.set_execution_state(
            self.execution.id,
            state,
            exit_code=end.exit_code,
            status=end.status,
            message=detail,
            also_log=("result", result),
        )
        self._on_end(execution, end.retryable and state is ExecutionState.FAILED)

    def abort(self, reason: str) -> None:
        """The result broke off before its end: the execution is lost (and its partial
        result removed by the requester: a partial result is no result)."""
        if self._over:
            return
        self.withdraw()
        self._on_lost(self.execution, reason)

    def withdraw(self) -> None:
        """Stop taking results (the execution is recorded as cancelled or lost already);
        whoever feeds the session through ``scope`` stops waiting for more."""
        if not self._over:
            self._over = True
            if self._unpacker is not None:
                self._unpacker.abort()
            self.writer.close()
        self.scope.cancel()


def _run_result(end: RunEnd) -> RunResult:
    try:
        status = RunStatus(end.status)
    except ValueError:
        raise ProtocolError(f"unknown run status {end.status!r}") from None
    return RunResult(status=status, exit_code=end.exit_code)
