#!/usr/bin/env bash
# Differential conformance (issue 5): builds every case under cases/ with kiln and with each
# peer that is available (buildah when installed; docker+BuildKit when the daemon at
# $DOCKER_HOST, default unix:///tmp/lab-docker/docker.sock, answers), exports each result as
# an OCI layout, unpacks it with umoci outside kiln and compares rootfs and config
# (conform.py). Known, intended differences: known-differences.txt.
#
# usage: tests/conformance/run.sh [CASE-GLOB...]
#
# A case is cases/NNN-name/: a Dockerfile and its context files; optional "args" (extra
# build arguments, one per line, the same for every builder; @CTX@ stands for the absolute
# path of the case's context copy, @HTTP@ for http://127.0.0.1:PORT, a server over cases/)
# "prepare.sh" (run in the context copy before the builds, for what git cannot hold:
# modes, empty dirs, tarballs, symlinks) and "expect-fail" (an empty marker: the case passes
# only when kiln and the peer both refuse to build it).
# env:   KILN        kiln binary (default: $CARGO_TARGET_DIR or target/, release then debug)
#        CONF_PEERS  space-separated peers to try (default "buildah docker")
#        CONF_JOBS   cases built at once (default 2)
#        CONF_WORK   work directory (default a temp dir, removed at the end unless CONF_KEEP=1)
#        CONF_VERBOSE=1 also prints known differences of passing cases
# Prints one line per peer: "conformance kiln vs PEER: N passed, M failed"; exits 1 when
# any case has an unexpected difference.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
KNOWN=$HERE/known-differences.txt
JOBS=${CONF_JOBS:-2}
PEERS_WANTED=${CONF_PEERS:-buildah docker}
export DOCKER_HOST=${DOCKER_HOST:-unix:///tmp/lab-docker/docker.sock}
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=$(command -v docker || echo docker)

log() { printf 'conformance: %s\n' "$*" >&2; }

if [ -z "${KILN:-}" ]; then
  t=${CARGO_TARGET_DIR:-$REPO/target}
  for c in "$t/release/kiln" "$t/debug/kiln"; do
    if [ -x "$c" ]; then KILN=$c; break; fi
  done
fi
[ -n "${KILN:-}" ] && [ -x "$KILN" ] || { log "kiln binary not found (set KILN or cargo build -p kiln-cli)"; exit 2; }
for tool in umoci skopeo python3 jq; do
  command -v "$tool" >/dev/null || { log "$tool missing (scripts/setup.sh installs it)"; exit 2; }
done

PEERS=""
for p in $PEERS_WANTED; do
  case $p in
    buildah) command -v buildah >/dev/null && PEERS="$PEERS buildah" || log "buildah not installed: skipped" ;;
    docker) if timeout 10 "$DOCKER" version >/dev/null 2>&1; then PEERS="$PEERS docker"
            else log "no docker daemon at $DOCKER_HOST: docker skipped"; fi ;;
    *) log "unknown peer $p"; exit 2 ;;
  esac
done
PEERS=${PEERS# }

WORK=${CONF_WORK:-$(mktemp -d /tmp/kiln-conformance.XXXXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
cleanup() {
  if [ -n "${HTTP_PID:-}" ]; then kill "$HTTP_PID" 2>/dev/null || true; fi
  if [ -n "${SSH_AGENT_PID:-}" ]; then kill "$SSH_AGENT_PID" 2>/dev/null || true; fi
  if [ "${CONF_KEEP:-}" != 1 ]; then
    if [ -n "${BAH_ROOT:-}" ] && [ -d "$BAH_ROOT" ]; then
      buildah $BAH rm --all >/dev/null 2>&1 || true
      buildah $BAH rmi --all --force >/dev/null 2>&1 || true
      # buildah's overlay driver may leave its own mounts under the storage root
      findmnt -rn -o TARGET | grep "^$WORK/" | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    fi
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

# --- the shared base images, made once per run, independently of every peer -------------
log "work dir $WORK; kiln $KILN; peers: ${PEERS:-none}"
python3 "$HERE/mkbase.py" "$WORK/base.tar"
export KILN_ROOT=$WORK/kiln
"$KILN" load -i "$WORK/base.tar" >/dev/null
BAH_ROOT=$WORK/buildah/root
BAH_RUN=$WORK/buildah/run
BAH_DRIVER=overlay
# buildah's overlay driver needs overlayfs on the work dir's filesystem; vfs works anywhere
if case " $PEERS " in *" buildah "*) true ;; *) false ;; esac &&
   ! buildah --root "$BAH_ROOT" --runroot "$BAH_RUN" --storage-driver overlay images >/dev/null 2>&1; then
  BAH_DRIVER=vfs
  log "buildah: overlay storage unavailable, using vfs"
fi
BAH="--root $BAH_ROOT --runroot $BAH_RUN --storage-driver $BAH_DRIVER"
CS="containers-storage:[$BAH_DRIVER@$BAH_ROOT+$BAH_RUN]"
for img in conf-base conf-rich; do
  case " $PEERS " in *" buildah "*)
    skopeo copy -q "oci-archive:$WORK/base.tar:localhost/$img:latest" "${CS}localhost/$img:latest" ;;
  esac
  case " $PEERS " in *" docker "*)
    skopeo copy -q "oci-archive:$WORK/base.tar:localhost/$img:latest" \
      "docker-archive:$WORK/$img-docker.tar:localhost/$img:latest"
    "$DOCKER" load -q -i "$WORK/$img-docker.tar" >/dev/null ;;
  esac
done
# an ssh agent holding a throw-away key, for RUN --mount=type=ssh cases (--ssh default)
if command -v ssh-agent >/dev/null && command -v ssh-keygen >/dev/null; then
  eval "$(ssh-agent -s -a "$WORK/ssh-agent.sock")" >/dev/null
  ssh-keygen -q -t ed25519 -N '' -C conformance -f "$WORK/ssh-key" >/dev/null
  ssh-add -q "$WORK/ssh-key" 2>/dev/null || true
fi
# a local HTTP server over cases/ for ADD <url> cases (@HTTP@ in args; no internet here)
HTTP_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$HERE/cases" "$HTTP_PORT" >"$WORK/http.log" 2>&1 &
HTTP_PID=$!
for _ in $(seq 50); do
  python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$HTTP_PORT/')" 2>/dev/null && break
  sleep 0.1
done
export WORK BAH CS DOCKER KILN KNOWN HERE PEERS HTTP_PORT

# --- one case: build with every builder, describe, compare --------------------------------
run_case() {
  local case=$1 src=$HERE/cases/$1 w=$WORK/cases/$1
  rm -rf "$w"; mkdir -p "$w"
  local args=()
  if [ -f "$src/args" ]; then
    while IFS= read -r a || [ -n "$a" ]; do
      [ -z "$a" ] || [[ $a == \#* ]] || a=${a//@CTX@/$w/ctx}; args+=("${a//@HTTP@/http://127.0.0.1:$HTTP_PORT}")
    done < "$src/args"
  fi
  # the context is a copy of the case minus the runner's own files; prepare.sh may add what
  # git cannot hold (modes, empty dirs, tarballs)
  mkdir -p "$w/ctx"
  # fresh mtimes (-m): dockerd 20.10 reuses an earlier build's Dockerfile when path-independent
  # metadata (size, mtime) match
  tar -C "$src" --exclude=./args --exclude=./prepare.sh --exclude=./expect-fail -cf - . | tar -C "$w/ctx" -xmf -
  if [ -f "$src/prepare.sh" ]; then
    (cd "$w/ctx" && bash "$src/prepare.sh") > "$w/prepare.log" 2>&1 ||
      { echo "ERROR $case: prepare.sh failed"; cat "$w/prepare.log"; }
  fi
  local tag=conf-$case
  # every builder gets its own copy of the context: a RUN --mount=type=bind,rw of buildah
  # writes through to the directory it was given
  local b
  for b in kiln $PEERS; do cp -a "$w/ctx" "$w/ctx-$b"; done
  # kiln
  if (cd "$w/ctx-kiln" && "$KILN" build -q --progress plain "${args[@]}" \
        -o "type=oci,dest=$w/kiln.oci,tar=false" .) > "$w/kiln.log" 2>&1; then
    python3 "$HERE/conform.py" describe "$w/kiln.oci" - "$w/kiln.desc" 2>>"$w/kiln.log" || rm -f "$w/kiln.desc"
  fi
  local peer
  for peer in $PEERS; do
    case $peer in
      buildah)
        if (cd "$w/ctx-buildah" && buildah $BAH bud --layers=false --force-rm --format docker --isolation chroot \
              -q -t "localhost/$tag" "${args[@]}" .) > "$w/buildah.log" 2>&1 &&
           skopeo copy -q "${CS}localhost/$tag:latest" "oci:$w/buildah.oci:conf" >> "$w/buildah.log" 2>&1 &&
           skopeo inspect --config --raw "${CS}localhost/$tag:latest" > "$w/buildah.cfg" 2>>"$w/buildah.log"; then
          python3 "$HERE/conform.py" describe "$w/buildah.oci" "$w/buildah.cfg" "$w/buildah.desc" 2>>"$w/buildah.log" || rm -f "$w/buildah.desc"
        fi
        # No per-case `buildah rmi`: removing an image while another job commits over the
        # same base layers made buildah fail with "layer not known". The storage is wiped
        # once at the end instead.
        ;;
      docker)
        # one docker build at a time (its session and content caches are shared)
        if (cd "$w/ctx-docker" && flock "$WORK/docker.lock" sh -c 'd=$0 t=$1 o=$2; shift 2
              DOCKER_BUILDKIT=1 "$d" build -q -t "$t" "$@" . && "$d" save -o "$o" "$t"' \
              "$DOCKER" "conf/$tag" "$w/docker.tar" "${args[@]}") > "$w/docker.log" 2>&1 &&
           skopeo copy -q "docker-archive:$w/docker.tar" "oci:$w/docker.oci:conf" >> "$w/docker.log" 2>&1 &&
           skopeo inspect --config --raw "docker-archive:$w/docker.tar" > "$w/docker.cfg" 2>>"$w/docker.log"; then
          python3 "$HERE/conform.py" describe "$w/docker.oci" "$w/docker.cfg" "$w/docker.desc" 2>>"$w/docker.log" || rm -f "$w/docker.desc"
        fi
        rm -f "$w/docker.tar"
        "$DOCKER" rmi -f "conf/$tag" >/dev/null 2>&1 || true ;;
    esac
    local res=pass
    CONF_EXPECT_FAIL=$([ -f "$src/expect-fail" ] && echo 1) CONF_USED=$w/used python3 "$HERE/conform.py" compare "$case" "$peer" "$w/kiln.desc" "$w/$peer.desc" "$KNOWN" > "$w/$peer.cmp" || res=fail
    if [ $res = fail ] && grep -q '^  DIFF   build:' "$w/$peer.cmp"; then
      { [ -f "$w/kiln.desc" ] || { echo "  --- kiln log:"; tail -5 "$w/kiln.log" | sed 's/^/  | /'; }
        [ -f "$w/$peer.desc" ] || { echo "  --- $peer log:"; tail -5 "$w/$peer.log" | sed 's/^/  | /'; }
      } >> "$w/$peer.cmp"
    fi
    cat "$w/$peer.cmp"
    echo "$res" > "$w/$peer.result"
  done
  [ -n "$PEERS" ] || echo pass > "$w/none.result"
  rm -rf "$w"/*.oci "$w"/ctx-*
}
export -f run_case

cases=()
for d in "$HERE"/cases/*/; do
  c=$(basename "$d")
  if [ $# -gt 0 ]; then
    m=0; for g in "$@"; do [[ $c == $g ]] && m=1; done
    [ $m = 1 ] || continue
  fi
  cases+=("$c")
done
log "${#cases[@]} cases, $JOBS at once"
start=$(date +%s)
printf '%s\n' "${cases[@]}" | xargs -P "$JOBS" -I{} bash -c 'run_case "$@"' _ {}
log "done in $(( $(date +%s) - start ))s"

status=0
# rules no difference needed: stale once kiln is fixed (only meaningful over all cases)
if [ $# = 0 ] && [ -n "$PEERS" ]; then
  cat "$WORK"/cases/*/used 2>/dev/null > "$WORK/used" || true
  python3 "$HERE/conform.py" unused "$KNOWN" "$WORK/used" "$PEERS" >&2
fi
if [ -z "$PEERS" ]; then
  echo "conformance: no peer available; kiln built ${#cases[@]} cases, nothing compared"
fi
for peer in $PEERS; do
  p=0; f=0
  for c in "${cases[@]}"; do
    if [ "$(cat "$WORK/cases/$c/$peer.result" 2>/dev/null)" = pass ]; then p=$((p+1)); else f=$((f+1)); fi
  done
  echo "conformance kiln vs $peer: $p passed, $f failed"
  [ "$f" = 0 ] || status=1
done
exit $status
