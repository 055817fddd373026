#!/usr/bin/env bash
# `flywheel runner setup` for a job. Shared by the actions beside this one, which call it
# through their own $GITHUB_ACTION_PATH: a `uses: ./actions/...` inside a composite action
# resolves against the calling repository's checkout, where these files are not.
set -uo pipefail

flywheel="${INPUT_FLYWHEEL:-flywheel}"
if ! command -v "$flywheel" >/dev/null 2>&1; then
  echo "::warning::$flywheel is not installed on this runner; the job runs without the cache"
  if [ -n "${GITHUB_OUTPUT:-}" ]; then
    printf 'reachable=false\ncan-push=false\n' >>"$GITHUB_OUTPUT"
  fi
  exit 0
fi

args=(runner setup)
if [ "${INPUT_WATCH_STORE:-false}" = "true" ]; then
  args+=(--watch-store)
fi
if ! "$flywheel" "${args[@]}"; then
  echo "::warning::flywheel runner setup failed; the job runs without the cache"
fi
exit 0
