"""The JSON API under /_api/v1: Attic's routes, and ours beside them."""
