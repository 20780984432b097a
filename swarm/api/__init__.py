"""The node's HTTP API: a FastAPI app served in the node's trio loop (``swarm.api.server``)."""
