"""GloriousFlywheel: self-hosted CI that builds, caches and monitors itself."""

__version__ = "0.1.0"
