#!/usr/bin/env bash
# Registry push/pull benchmark of the lab case c3 (300 MiB incompressible layer + 20,000
# small files): kiln vs skopeo, buildah and docker, against a local docker-registry.
#
# usage: bench/registry-bench.sh [--runs N] [--kiln PATH]
#
# Setup (untimed, under bench/work/regbench/, git-ignored):
#   * the c3 context (bench/cases/gen-contexts.sh), busybox imported into a kiln store
#     (scripts/mk-busybox-rootfs.sh), c3 built into it as bench/c3 (SOURCE_DATE_EPOCH
#     fixed), saved as an oci-archive and unpacked to an OCI layout dir for skopeo, and
#     loaded into a private buildah storage and (when it answers) the lab's dockerd
#   * a throw-away docker-registry on 127.0.0.1:5104 (plain HTTP, config of the :5100 test
#     registry, its own storage), WIPED AND RESTARTED BEFORE EVERY PUSH: no tool can skip
#     an upload by a HEAD hit or a cross-repository mount left by an earlier push
#
# Timed, per run and tool (tools alternate within a run; wall time of the one command):
#   push  the c3 image from the tool's own storage to 127.0.0.1:5104/bench/<tool>:c3
#         kiln:    kiln push bench/c3 REG/…         (blobs read from the kiln store)
#         skopeo:  skopeo copy oci:DIR docker://REG/… (from the OCI layout export)
#         buildah: buildah push --tls-verify=false
#         docker:  docker push (only when DOCKER_HOST answers; loopback is insecure-allowed)
#   pull  what that tool pushed, into an empty destination
#         kiln:    kiln pull into an empty KILN_ROOT  (blobs verified into the store; no unpack)
#         skopeo:  skopeo copy docker://… oci:EMPTY_DIR (blobs only; no unpack)
#         buildah: buildah pull into an empty storage  (download + unpack into overlay layers)
#         docker:  docker rmi, then docker pull        (download + unpack)
# Output: a markdown table of medians (min–max) and kiln/peer ratios on stdout, raw
# times in bench/work/regbench/results/<stamp>/runs.tsv. The machine load is recorded.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
W=$BENCH/work/regbench
RUNS=3
KILN=""
PORT=5104
REG=127.0.0.1:$PORT
DOCKER_SOCK=${DOCKER_SOCK:-/tmp/lab-docker/docker.sock}
EPOCH=1700000000

while [ $# -gt 0 ]; do
  case $1 in
    --runs) RUNS=${2:?}; shift 2 ;;
    --kiln) KILN=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "registry-bench: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$KILN" ]; then
  KILN=${CARGO_TARGET_DIR:-$REPO/target}/release/kiln
fi
[ -x "$KILN" ] || { echo "registry-bench: $KILN missing (cargo build --release -p kiln-cli, or --kiln PATH)" >&2; exit 1; }

note() { printf '== %s\n' "$*" >&2; }
now() { date +%s.%N; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "NA"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
dk() { DOCKER_HOST=unix://$DOCKER_SOCK docker "$@"; }
docker_alive() { [ -S "$DOCKER_SOCK" ] && command -v docker >/dev/null && DOCKER_HOST=unix://$DOCKER_SOCK timeout 20 docker info >/dev/null 2>&1; }

mkdir -p "$W"
CTX=$W/ctx
KROOT=$W/kiln-built
OCIDIR=$W/c3-oci
BROOT=$W/buildah-src

# ------------------------------------------------------------------ setup (untimed)
"$BENCH/cases/gen-contexts.sh" "$CTX" c3-big-context >&2
if ! "$KILN" images --root "$KROOT" --format json 2>/dev/null | grep -q '"docker.io/library/busybox:latest"'; then
  "$REPO/scripts/mk-busybox-rootfs.sh" "$W/busybox-rootfs.tar" >&2
  SOURCE_DATE_EPOCH=$EPOCH "$KILN" import --root "$KROOT" "$W/busybox-rootfs.tar" -t busybox \
    --change 'CMD ["sh"]' >&2
fi
if ! "$KILN" images --root "$KROOT" --format json | grep -q '"docker.io/bench/c3:latest"'; then
  note "building c3 with kiln"
  SOURCE_DATE_EPOCH=$EPOCH "$KILN" build --root "$KROOT" -t bench/c3 "$CTX/c3-big-context" >&2
fi
if [ ! -s "$OCIDIR/index.json" ]; then
  note "exporting c3 to an OCI layout dir for skopeo"
  "$KILN" save --root "$KROOT" --format oci -o "$W/c3.oci.tar" bench/c3
  rm -rf "$OCIDIR.tmp" && mkdir -p "$OCIDIR.tmp"
  tar -C "$OCIDIR.tmp" -xf "$W/c3.oci.tar"
  rm -rf "$OCIDIR" && mv "$OCIDIR.tmp" "$OCIDIR"
fi
have_buildah=0
if command -v buildah >/dev/null; then
  have_buildah=1
  bh() { buildah --root "$1/root" --runroot "$1/run" "${@:2}"; }
  if ! bh "$BROOT" images -q localhost/bench/c3:latest >/dev/null 2>&1; then
    note "loading c3 into a private buildah storage"
    rm -rf "$BROOT"
    bh "$BROOT" pull -q "oci:$OCIDIR" >/dev/null
    bh "$BROOT" tag "$(bh "$BROOT" images -q | head -n1)" localhost/bench/c3:latest
  fi
fi
have_docker=0
if docker_alive; then
  have_docker=1
  # A name of our own: the lab's dockerd is shared (bench.sh of others uses bench/*).
  if ! dk image inspect kiln-regbench/c3:latest >/dev/null 2>&1; then
    note "loading c3 into the lab's dockerd as kiln-regbench/c3"
    "$KILN" tag --root "$KROOT" bench/c3 kiln-regbench/c3
    "$KILN" save --root "$KROOT" -o "$W/c3.docker.tar" kiln-regbench/c3
    dk load -q -i "$W/c3.docker.tar" >&2
  fi
else
  note "docker: no daemon answers on $DOCKER_SOCK; docker columns skipped"
fi

# ------------------------------------------------------------------ the bench registry
RDIR=$W/registry
reg_stop() {
  if [ -s "$RDIR/pid" ]; then
    kill "$(cat "$RDIR/pid")" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$(cat "$RDIR/pid")" 2>/dev/null || break; sleep 0.1; done
    rm -f "$RDIR/pid"
  fi
}
reg_fresh() { # wipe storage, (re)start
  reg_stop
  rm -rf "$RDIR/data"
  mkdir -p "$RDIR/data"
  cat >"$RDIR/config.yml" <<YAML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $RDIR/data
  delete:
    enabled: true
http:
  addr: $REG
  secret: kiln-bench
YAML
  setsid docker-registry serve "$RDIR/config.yml" >"$RDIR/log" 2>&1 </dev/null &
  echo $! >"$RDIR/pid"
  for _ in $(seq 1 100); do
    curl -fs -o /dev/null --max-time 1 "http://$REG/v2/" && return 0
    sleep 0.1
  done
  echo "registry-bench: registry on $REG did not come up ($RDIR/log)" >&2
  exit 1
}
trap reg_stop EXIT

# ------------------------------------------------------------------ runs
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$W/results/$STAMP
mkdir -p "$OUT"
TSV=$OUT/runs.tsv
: >"$TSV"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
TOOLS="kiln skopeo"
[ $have_buildah = 1 ] && TOOLS="$TOOLS buildah"
[ $have_docker = 1 ] && TOOLS="$TOOLS docker"
note "tools: $TOOLS; runs: $RUNS; kiln: $KILN; load: $LOAD_START"

timed() { # TOOL OP RUN cmd... ; appends a row, keeps the log
  local tool=$1 op=$2 run=$3 t0 t1 rc=0
  shift 3
  local load
  load=$(cut -d' ' -f1 /proc/loadavg)
  t0=$(now)
  "$@" >"$OUT/$tool-$op-$run.log" 2>&1 || rc=$?
  t1=$(now)
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$op" "$run" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" "$rc" "$load" >>"$TSV"
  [ $rc = 0 ] || note "$tool $op run $run failed (rc $rc): see $OUT/$tool-$op-$run.log"
}

for run in $(seq 1 "$RUNS"); do
  for tool in $TOOLS; do
    dest=$REG/bench/$tool:c3
    reg_fresh
    sync
    case $tool in
      kiln)
        timed kiln push "$run" "$KILN" push --root "$KROOT" bench/c3 "$dest"
        rm -rf "$W/kiln-pull"
        timed kiln pull "$run" "$KILN" pull --root "$W/kiln-pull" "$dest"
        rm -rf "$W/kiln-pull" ;;
      skopeo)
        timed skopeo push "$run" skopeo copy -q --dest-tls-verify=false "oci:$OCIDIR" "docker://$dest"
        rm -rf "$W/skopeo-pull"
        timed skopeo pull "$run" skopeo copy -q --src-tls-verify=false "docker://$dest" "oci:$W/skopeo-pull:c3"
        rm -rf "$W/skopeo-pull" ;;
      buildah)
        timed buildah push "$run" bh "$BROOT" push -q --tls-verify=false localhost/bench/c3:latest "docker://$dest"
        rm -rf "$W/buildah-pull"
        timed buildah pull "$run" bh "$W/buildah-pull" pull -q --tls-verify=false "docker://$dest"
        bh "$W/buildah-pull" rmi -a -f >/dev/null 2>&1 || true
        rm -rf "$W/buildah-pull" ;;
      docker)
        dk tag kiln-regbench/c3:latest "$dest"
        timed docker push "$run" dk push -q "$dest"
        # For the pull the daemon must not hold the layers: untag both names (the image
        # goes), pull, and keep the pulled image under our name for the next run.
        dk rmi -f "$dest" kiln-regbench/c3:latest >/dev/null 2>&1 || true
        timed docker pull "$run" dk pull -q "$dest"
        dk tag "$dest" kiln-regbench/c3:latest
        dk rmi "$dest" >/dev/null 2>&1 || true ;;
    esac
  done
done
reg_stop
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------------ report
med() { awk -F'\t' -v t="$1" -v o="$2" '$1 == t && $2 == o && $5 == 0 { print $4 }' "$TSV" | median; }
rng() { awk -F'\t' -v t="$1" -v o="$2" '$1 == t && $2 == o && $5 == 0 { if (n++ == 0 || $4 < lo) lo = $4; if ($4 > hi) hi = $4 } END { if (n) printf "%.3f–%.3f", lo, hi; else printf "n/a" }' "$TSV"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "NA" || b <= 0) printf "n/a"; else printf "%.2f", a / b }'; }
{
  echo "### c3 push / pull through a local docker-registry ($REG), median (min–max) of $RUNS runs (s)"
  echo
  echo "Load average (1/5/15 min): $LOAD_START at the start, $LOAD_END at the end. Raw: $TSV"
  echo
  row="| op |"; sepr="|---|"
  for t in $TOOLS; do row="$row $t |"; sepr="$sepr---|"; done
  for t in $TOOLS; do [ "$t" = kiln ] || { row="$row kiln/$t |"; sepr="$sepr---|"; }; done
  echo "$row"; echo "$sepr"
  for op in push pull; do
    row="| $op |"
    for t in $TOOLS; do row="$row $(med "$t" "$op") ($(rng "$t" "$op")) |"; done
    for t in $TOOLS; do [ "$t" = kiln ] || row="$row $(ratio "$(med kiln "$op")" "$(med "$t" "$op")") |"; done
    echo "$row"
  done
} | tee "$OUT/report.md"
