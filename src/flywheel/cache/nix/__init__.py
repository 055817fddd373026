"""The Nix side of the cache plane: NAR ingest and verification, narinfos, lookups."""
