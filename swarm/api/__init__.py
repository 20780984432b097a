"""The node's HTTP API: a FastAPI app served by hypercorn in the node's trio loop."""
