"""Test helpers that drive real programs: the flywheel server process and the nix client."""
