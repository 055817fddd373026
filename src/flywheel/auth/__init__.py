"""Tokens, permissions and revocation."""
