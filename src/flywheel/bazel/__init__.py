"""Bazel remote-cache formats: digests, resource names, ActionResult validation, REAPI stubs."""
