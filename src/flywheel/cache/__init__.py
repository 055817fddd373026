"""Domain services of the cache: caches, ingest, serving lookups, integrity checks."""
