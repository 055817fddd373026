"""The runner side: inside a job, turn the variables a pool injects into a working Nix and
Bazel set-up against the caches, and never fail the job over a cache."""
