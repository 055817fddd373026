"""The Bazel side of the cache plane: a verified CAS and per-cache action caches."""
