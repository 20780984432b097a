"""swarm: peer-to-peer compute over data.

Send a small WebAssembly module to the nodes that hold the data, run it there in a
sandbox, and stream the (much smaller) results back. This package is the library; the
`swarm` command line lives in `cli/`.
"""

__version__ = "0.1.0"
