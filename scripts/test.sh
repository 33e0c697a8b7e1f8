#!/usr/bin/env bash
# Install zoo with its test extras and run the test suite (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[test]"
python -m pytest "$@"
