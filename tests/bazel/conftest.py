# Someone running bazel by hand in workspace/ leaves bazel-* symlinks into its output base.
collect_ignore_glob = ["workspace/*"]
