"""Keeping stored content and metadata consistent: fsck (and garbage collection)."""
