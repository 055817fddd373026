"""The runner plane: one fleet spec (pools, enrollments, cache wiring, schedules) rendered to
ARC runner scale sets, validated offline, planned and applied with server-side apply, and the
runner-side setup that points a job's nix and bazel at the caches."""
