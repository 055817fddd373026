"""The operator plane: dashboard pages, audit, webhooks, forges, GitOps, statistics."""
