"""The one exception tree of swarm.

Every error says what happened and what the user can do about it, in one line, so that
the CLI can print ``str(error)`` and exit. Errors from libraries (wasmtime, libp2p,
sqlite, msgpack) are translated at the adapter that calls them, with ``raise ... from``.

    SwarmError                    root; ``retryable`` tells a requester whether to re-award
    ├── ConfigError               bad flags, settings or job spec; fix the input
    ├── NotFound                  no job, execution or blob with that id (or prefix)
    ├── MountError                an input mount that cannot be provided
    │   └── InputUnavailable      an input the node bid for is gone; retryable elsewhere
    ├── ModuleError               a module that is not a runnable WASI command module
    ├── ExecutorError             the sandbox itself failed (worker died); retryable
    ├── ProtocolError             bytes from the network that are not a valid message
    ├── ApiError                  a node's HTTP API is unreachable or refused a request
    ├── IllegalTransition         a state change the lifecycle tables forbid (a bug or a race)
    └── StorageError              the node's own disk or database failed (full, corrupt, newer)
"""

from __future__ import annotations


class SwarmError(Exception):
    """Root of every error swarm raises on purpose."""

    retryable: bool = False


class ConfigError(SwarmError):
    """Bad flags, settings or job spec: the user has to change the input."""


class MountError(SwarmError):
    """An input mount that cannot be provided (missing path, clash of guest paths)."""


class InputUnavailable(MountError):
    """An input this node bid for is gone since: another node may still have it."""

    retryable = True


class ModuleError(SwarmError):
    """The module is not a runnable WASI preview-1 command module."""


class ExecutorError(SwarmError):
    """The sandbox itself failed, not the guest: another attempt may succeed."""

    retryable = True


class ProtocolError(SwarmError):
    """Bytes that do not decode into a valid message. Dropped and counted, never fatal."""


class ApiError(SwarmError):
    """A node's HTTP API could not be reached, or refused or failed a request."""


class NotFound(SwarmError):
    """No job, execution or blob has that id (or id prefix): the user should check the id."""


class IllegalTransition(SwarmError):
    """A job or execution asked to move between states the lifecycle tables do not link."""


class StorageError(SwarmError):
    """The node's own storage failed: a full disk, a corrupt or newer database."""
