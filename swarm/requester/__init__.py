"""The requester role: the job store (SQLite), the result store and orchestration."""
