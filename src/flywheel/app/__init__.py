"""The composition root: settings, services, first start, secrets."""
