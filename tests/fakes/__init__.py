"""Fakes for what cannot run on these machines, behaving like the real thing for what the
product uses (a Kubernetes API server)."""
