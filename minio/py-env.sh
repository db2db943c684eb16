#!/usr/bin/env bash
# The Python environment of the tests: a virtualenv (default <repo>/.venv-test, or
# STRATA_PY_VENV) holding minio/requirements-test.txt. Created on first use and updated when
# that file changes; prints the venv's folder on stdout, messages on stderr.
#
#   PATH="$(minio/py-env.sh)/bin:$PATH" cargo test ...     (./minio/with-s3.sh does this)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${STRATA_PY_VENV:-$repo/.venv-test}
req=$repo/minio/requirements-test.txt
say() { echo "py-env.sh: $*" >&2; }

command -v python3 >/dev/null || { say "error: python3 is not installed"; exit 1; }
if [[ ! -x $venv/bin/python3 ]]; then
    say "creating the test virtualenv in $venv"
    python3 -m venv "$venv" >&2 || {
        say "error: python3 -m venv failed (on Debian: apt-get install python3-venv)"
        exit 1
    }
fi
want=$(sha256sum "$req" | cut -d' ' -f1)
stamp=$venv/.requirements.sha256
if [[ ! -s $stamp || $(<"$stamp") != "$want" ]]; then
    say "installing $(grep -cv '^\s*\(#\|$\)' "$req") packages of minio/requirements-test.txt (first run only)"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python3" -m pip install --quiet -r "$req" >&2 || {
        say "error: pip could not install minio/requirements-test.txt"
        exit 1
    }
    echo "$want" >"$stamp"
fi
echo "$venv"
