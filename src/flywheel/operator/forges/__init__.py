"""Forges behind one interface: GitHub (githubkit) and GitLab (python-gitlab)."""
