"""The remote side of flywheel: server profiles, pushing store paths, pointing Nix at a
cache, watching the store, and remote cache and token administration.

Nothing here imports the server, the database or the web framework: a laptop that only
pushes needs httpx, pydantic and the ``nix`` binaries, not the cache's dependencies."""
