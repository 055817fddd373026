"""Pure implementations of Nix's formats: base32, hashes, store paths, narinfo, NAR, keys."""
