"""The `swarm` command line: thin typer commands over `swarm.client` and the library."""
