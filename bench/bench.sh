#!/usr/bin/env bash
# kiln build benchmark: kiln vs buildah (and docker+BuildKit when a daemon answers).
#
# usage: bench/bench.sh [--runs N] [--peers kiln,buildah,docker] [--no-build] [--settle S] [CASE...]
#        bench/bench.sh --report RESULT_DIR        (re-print the tables of an earlier run)
#
# CASE is a directory name under bench/cases/ or its prefix (c1, c2, ...). Default cases:
# c1 c2 c4 c6 (c3 = 300 MiB + 20,000 files and c5 = debian + apt are only run when named).
#
# Setup (idempotent, everything under bench/work/, which is git-ignored):
#   * builds kiln (release) and pins a copy of the binary in bench/work/bin/
#   * generates the build contexts (bench/cases/gen-contexts.sh) in bench/work/ctx/
#   * bench/work/kiln-base: a pristine kiln store holding only the base images (busybox,
#     and debian:bookworm from mmdebstrap when c5 is asked for) with their layers already
#     unpacked into snapshots; no build cache.  The store used by the runs,
#     bench/work/kiln-root, is a copy of it, re-made before every cold run.
#   * buildah: a private containers-storage under bench/work/buildah/ holding the same base
#     images (kiln save --format oci, then skopeo copy); needs runc and the
#     /etc/containers/containers.conf.d drop-in this script writes (runc + ulimits)
#   * docker: only when a daemon answers on /tmp/lab-docker/docker.sock (DOCKER_SOCK); the
#     base images are loaded from kiln-saved docker archives
#
# Phases, per case, builders alternating run by run (kiln, buildah, kiln, buildah, ...):
#   cold-a  (c2 only) `--target a` after a reset: one stage alone
#   cold    after a reset: build cache, built images and cache mounts removed, base kept;
#           with --settle S, `sync` and S seconds of sleep follow every reset. This root fs
#           is ext4 without a journal, whose inode allocator skips inodes deleted in the
#           last 60 s (longer while their table block is dirty) by scanning past them: right
#           after a reset deletes ~20,000 files (c3), creating files costs several times
#           more, for whichever builder runs next. 65 takes that out of the comparison.
#   warm    nothing changed (one unmeasured warm-up build per builder first)
#   edit    one small context file rewritten with new content before each run
#   export  the built image written to a docker-archive file
# Results: bench/work/results/<UTC stamp>/{runs.tsv,phases.tsv,report.md,logs/}.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
WORK=$BENCH/work
KBASE=$WORK/kiln-base
KROOT=$WORK/kiln-root
KILN=$WORK/bin/kiln
BROOT=$WORK/buildah/root
BRUN=$WORK/buildah/run
BTMP=$WORK/buildah/tmp
IMAGES=$WORK/images
CTX=$WORK/ctx
DOCKER_SOCK=${DOCKER_SOCK:-/tmp/lab-docker/docker.sock}
DOCKER_CLI=${DOCKER_CLI:-/usr/bin/docker}
LAB_DOCKER_REF=${LAB_DOCKER_REF:-/work/shared/lab/results/docker/summary.tsv}
PATH_ENV='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
MMDEBSTRAP_TIMEOUT=${MMDEBSTRAP_TIMEOUT:-900}

RUNS=3
SETTLE=0
PEERS_ARG=""
BUILD_KILN=1
REPORT_ONLY=""
CASES=()

die() { echo "bench: $*" >&2; exit 1; }
note() { printf '%s\n' "$*" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
load1() { cut -d' ' -f1 /proc/loadavg; }

usage() { sed -n '2,30p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case $1 in
    --runs) RUNS=${2:?--runs N}; shift 2 ;;
    --runs=*) RUNS=${1#*=}; shift ;;
    --peers) PEERS_ARG=${2:?--peers LIST}; shift 2 ;;
    --peers=*) PEERS_ARG=${1#*=}; shift ;;
    --no-build) BUILD_KILN=0; shift ;;
    --settle) SETTLE=${2:?--settle SECONDS}; shift 2 ;;
    --settle=*) SETTLE=${1#*=}; shift ;;
    --report) REPORT_ONLY=${2:?--report DIR}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) CASES+=("$1"); shift ;;
  esac
done
case $RUNS in ''|*[!0-9]*|0) die "--runs wants a positive integer" ;; esac
case $SETTLE in ''|*[!0-9]*) die "--settle wants a number of seconds" ;; esac

# ---------------------------------------------------------------- helpers per builder

bh() { TMPDIR=$BTMP buildah --root "$BROOT" --runroot "$BRUN" "$@"; }
dk() { DOCKER_HOST=unix://$DOCKER_SOCK "$DOCKER_CLI" "$@"; }
docker_alive() { [ -S "$DOCKER_SOCK" ] && [ -x "$DOCKER_CLI" ] && dk info >/dev/null 2>&1; }

# kiln image id of REF in the pristine store (empty when absent)
kiln_base_id() {
  "$KILN" images --root "$KBASE" --format json |
    jq -r --arg r "$1" '.[] | select(.reference == $r) | .id' | head -n1
}

# RUN time on the critical path, from a `kiln build --progress json` log: the exec_time
# of the RUN steps of the final stage plus the largest per-stage sum among the other
# stages.  That is the critical path when the non-final stages are independent of each
# other, which holds for every case here (c2: stages a and b feed the final stage).
crit_exec() {
  grep '^{' "$1" | jq -s '
    def stage: (.description | capture("^\\[(?<s>[^\\] ]+)").s);
    [ .[] | select(.kind == "done") ] as $d
    | if ($d | length) == 0 then 0 else
        ($d[-1] | stage) as $final
        | [ $d[] | select(.exec_time != null) | {s: stage, t: .exec_time} ] as $x
        | ([ $x[] | select(.s == $final) | .t ] | add // 0)
          + ([ $x | map(select(.s != $final)) | group_by(.s)[] | map(.t) | add ] | max // 0)
      end'
}

sep() { awk -F'|' '{ s = "|"; for (i = 2; i < NF; i++) s = s "---|"; print s }'; }
ref_of() { case $1 in *:*) echo "docker.io/library/$1" ;; *) echo "docker.io/library/$1:latest" ;; esac; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "NA"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ---------------------------------------------------------------- report

# median of column COL (5 = wall, 6 = kiln RUN time) of successful runs
med() { # DIR CASE PHASE PEER COL
  awk -F'\t' -v c="$2" -v p="$3" -v b="$4" -v col="$5" \
    '$1 == c && $2 == p && $3 == b && $8 == 0 && $col != "NA" { print $col }' "$1/runs.tsv" | median
}
spread() { # DIR CASE PHASE PEER -> "median (min–max)" of wall times
  local m
  m=$(med "$@" 5)
  [ "$m" = NA ] && { printf 'n/a'; return; }
  awk -F'\t' -v c="$2" -v p="$3" -v b="$4" -v m="$m" \
    '$1 == c && $2 == p && $3 == b && $8 == 0 { if (n++ == 0 || $5 < lo) lo = $5; if ($5 > hi) hi = $5 }
     END { printf "%.3f (%.3f–%.3f)", m, lo, hi }' "$1/runs.tsv"
}
fmt() { case $1 in NA|"") printf 'n/a' ;; *) printf '%.3f' "$1" ;; esac; }
ratio() { if [ "$1" = NA ] || [ "$2" = NA ] || [ -z "$1" ] || [ -z "$2" ]; then printf 'n/a'; else awk -v a="$1" -v b="$2" 'BEGIN { if (b <= 0) printf "n/a"; else printf "%.2f", a / b }'; fi; }
minus() { if [ "$1" = NA ] || [ "$2" = NA ]; then echo NA; else awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", a - b }'; fi; }
lab_ref() { # CASE PHASE -> docker median from the lab's summary (not the same run)
  [ -r "$LAB_DOCKER_REF" ] || { echo NA; return; }
  awk -F'\t' -v c="$1" -v p="$2" '$1 == "docker" && $2 == c && $3 == p { print $5; f = 1 } END { if (!f) print "NA" }' "$LAB_DOCKER_REF" | head -n1
}

report() { # DIR
  local dir=$1 peers cases c p b kw kx row ld have_docker=0 ref=0
  peers=$(cat "$dir/peers")
  cases=$(cat "$dir/cases")
  case ",$peers," in *,docker,*) have_docker=1 ;; esac
  [ $have_docker = 0 ] && [ -r "$LAB_DOCKER_REF" ] && ref=1
  echo "### Wall time, median (min–max) of $(cat "$dir/runs") runs (s)"
  echo
  row="| case | phase | load 1/5/15 min before phase |"
  for b in ${peers//,/ }; do row="$row $b |"; done
  for b in ${peers//,/ }; do [ "$b" = kiln ] || row="$row kiln/$b |"; done
  [ $ref = 1 ] && row="$row docker (lab ref, not same run) | kiln/docker-ref |"
  echo "$row"
  echo "$row" | sep
  for c in $cases; do
    for p in cold-a cold warm edit export; do
      grep -qP "^$c\t$p\t" "$dir/runs.tsv" || continue
      ld=$(awk -F'\t' -v c="$c" -v p="$p" '$1 == c && $2 == p { print $3 }' "$dir/phases.tsv" | head -n1)
      row="| $c | $p | $ld |"
      kw=$(med "$dir" "$c" "$p" kiln 5)
      for b in ${peers//,/ }; do row="$row $(spread "$dir" "$c" "$p" "$b") |"; done
      for b in ${peers//,/ }; do [ "$b" = kiln ] || row="$row $(ratio "$kw" "$(med "$dir" "$c" "$p" "$b" 5)") |"; done
      if [ $ref = 1 ]; then
        local r; r=NA; [ "$p" = export ] || [ "$p" = cold-a ] || r=$(lab_ref "$c" "$p")
        row="$row $(fmt "$r") | $(ratio "$kw" "$r") |"
      fi
      echo "$row"
    done
  done
  echo
  echo "### Overhead = wall − kiln's RUN time on the critical path (s), cold / edit"
  echo
  echo "kiln RUN = median of the critical-path exec_time sums from kiln's --progress json;"
  echo "every builder's overhead is its median wall time minus that same RUN time."
  echo
  row="| case | phase | kiln RUN | kiln overhead |"
  for b in ${peers//,/ }; do [ "$b" = kiln ] || row="$row $b overhead | kiln/$b overhead |"; done
  [ $ref = 1 ] && row="$row docker-ref overhead | kiln/docker-ref overhead |"
  echo "$row"
  echo "$row" | sep
  for c in $cases; do
    for p in cold-a cold edit; do
      grep -qP "^$c\t$p\tkiln\t" "$dir/runs.tsv" || continue
      kx=$(med "$dir" "$c" "$p" kiln 6)
      local ko; ko=$(minus "$(med "$dir" "$c" "$p" kiln 5)" "$kx")
      row="| $c | $p | $(fmt "$kx") | $(fmt "$ko") |"
      for b in ${peers//,/ }; do
        [ "$b" = kiln ] && continue
        local bo; bo=$(minus "$(med "$dir" "$c" "$p" "$b" 5)" "$kx")
        row="$row $(fmt "$bo") | $(ratio "$ko" "$bo") |"
      done
      if [ $ref = 1 ]; then
        local r ro; r=NA; [ "$p" = cold-a ] || r=$(lab_ref "$c" "$p"); ro=$(minus "$r" "$kx")
        row="$row $(fmt "$ro") | $(ratio "$ko" "$ro") |"
      fi
      echo "$row"
    done
  done
  if grep -qP '^c2-multistage-parallel\tcold-a\t' "$dir/runs.tsv"; then
    echo
    echo "### c2: two stages vs one stage alone (\`--target a\`), cold"
    echo
    echo "| builder | c2 cold | c2 --target a cold | ratio |"
    echo "|---|---|---|---|"
    for b in ${peers//,/ }; do
      local full one
      full=$(med "$dir" c2-multistage-parallel cold "$b" 5)
      one=$(med "$dir" c2-multistage-parallel cold-a "$b" 5)
      echo "| $b | $(fmt "$full") | $(fmt "$one") | $(ratio "$full" "$one") |"
    done
  fi
}

if [ -n "$REPORT_ONLY" ]; then report "$REPORT_ONLY"; exit 0; fi

# ---------------------------------------------------------------- cases and peers

all_cases=()
for d in "$BENCH"/cases/c*/; do all_cases+=("$(basename "$d")"); done
resolve_case() {
  local m=() c
  for c in "${all_cases[@]}"; do case $c in "$1"|"$1"-*) m+=("$c") ;; esac; done
  [ ${#m[@]} -eq 1 ] || die "case '$1' matches ${#m[@]} of: ${all_cases[*]}"
  echo "${m[0]}"
}
[ ${#CASES[@]} -gt 0 ] || CASES=(c1 c2 c4 c6)
sel=()
for c in "${CASES[@]}"; do sel+=("$(resolve_case "$c")"); done
CASES=("${sel[@]}")

if [ -n "$PEERS_ARG" ]; then IFS=, read -r -a PEERS <<<"$PEERS_ARG"; else PEERS=(kiln buildah docker); fi
for b in "${PEERS[@]}"; do case $b in kiln|buildah|docker) ;; *) die "unknown peer $b (kiln, buildah, docker)" ;; esac; done
has_peer() { local b; for b in "${PEERS[@]}"; do [ "$b" = "$1" ] && return 0; done; return 1; }
drop_peer() { local b n=(); for b in "${PEERS[@]}"; do [ "$b" = "$1" ] || n+=("$b"); done; PEERS=("${n[@]}"); }
drop_case() { local c n=(); for c in "${CASES[@]}"; do [ "$c" = "$1" ] || n+=("$c"); done; CASES=("${n[@]}"); }
has_peer kiln || die "kiln must be one of the peers"
for t in jq skopeo; do command -v "$t" >/dev/null || die "$t missing (apt-get install -y $t)"; done

NOTES=()
if has_peer docker && ! docker_alive; then
  NOTES+=("docker: no daemon answers on $DOCKER_SOCK (or $DOCKER_CLI missing): docker not measured")
  drop_peer docker
fi
if has_peer buildah && ! command -v buildah >/dev/null; then
  NOTES+=("buildah: not installed: not measured"); drop_peer buildah
fi

# ---------------------------------------------------------------- setup

mkdir -p "$WORK/bin" "$IMAGES" "$CTX" "$WORK/out"
note "== setup (load $(loadavg))"

if [ "$BUILD_KILN" = 1 ]; then
  # shellcheck disable=SC1091 # the repository's own env (PATH, CARGO_TARGET_DIR)
  . "$REPO/scripts/env.sh"
  (cd "$REPO" && cargo build --release -p kiln-cli) >&2
  cp "$CARGO_TARGET_DIR/release/kiln" "$KILN.tmp" && mv "$KILN.tmp" "$KILN"
  echo "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')" > "$KILN.commit"
fi
[ -x "$KILN" ] || die "$KILN missing (run without --no-build)"

"$BENCH/cases/gen-contexts.sh" "$CTX" "${CASES[@]}"

need_debian=0
for c in "${CASES[@]}"; do case $c in c5-*) need_debian=1 ;; esac; done

kiln_base_changed=0
if [ -z "$(kiln_base_id docker.io/library/busybox:latest)" ]; then
  "$REPO/scripts/mk-busybox-rootfs.sh" "$IMAGES/busybox-rootfs.tar"
  "$KILN" import --root "$KBASE" "$IMAGES/busybox-rootfs.tar" -t busybox \
    --change 'CMD ["sh"]' --change "$PATH_ENV" >&2
  kiln_base_changed=1
fi
if [ $need_debian = 1 ] && [ -z "$(kiln_base_id docker.io/library/debian:bookworm)" ]; then
  deb=$IMAGES/debian-bookworm-rootfs.tar
  if [ ! -s "$deb" ]; then
    command -v mmdebstrap >/dev/null || apt-get install -y mmdebstrap >&2 || true
    srcs=(/etc/apt/sources.list.d/debian.sources)
    [ -r "${srcs[0]}" ] || srcs=(http://deb.debian.org/debian)
    note "mmdebstrap debian:bookworm minbase (timeout ${MMDEBSTRAP_TIMEOUT}s)"
    if ! SOURCE_DATE_EPOCH=1700000000 timeout "$MMDEBSTRAP_TIMEOUT" mmdebstrap --variant=minbase --mode=root \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr bookworm "${deb%.tar}.part.tar" "${srcs[@]}" \
        >"$WORK/mmdebstrap.log" 2>&1; then
      rm -rf "${deb%.tar}.part.tar"
      NOTES+=("c5: mmdebstrap failed or timed out (see $WORK/mmdebstrap.log): c5 skipped")
    else mv "${deb%.tar}.part.tar" "$deb"; fi
  fi
  if [ -s "$deb" ]; then
    "$KILN" import --root "$KBASE" "$deb" -t debian:bookworm --change 'CMD ["bash"]' --change "$PATH_ENV" >&2
    kiln_base_changed=1
  fi
fi
if [ $need_debian = 1 ] && [ -z "$(kiln_base_id docker.io/library/debian:bookworm)" ]; then
  drop_case c5-debian-apt
fi
[ ${#CASES[@]} -gt 0 ] || die "no case left to run"

BASES=(busybox)
[ -n "$(kiln_base_id docker.io/library/debian:bookworm)" ] && BASES+=(debian:bookworm)

if [ $kiln_base_changed = 1 ]; then
  # unpack the base layers into snapshots once (a build of a bare FROM), then drop the
  # build cache that build left, so kiln-base holds base images + snapshots only
  prime=$WORK/prime
  for img in "${BASES[@]}"; do
    mkdir -p "$prime"
    printf 'FROM %s\n' "$img" > "$prime/Dockerfile"
    "$KILN" build --root "$KBASE" --progress plain -o type=tar,dest=/dev/null "$prime" >&2
  done
  rm -rf "$prime" "$KBASE/kiln/cache" "$KBASE/kiln/cache-mounts"
fi

# archives of the base images, shared by buildah and docker (same image everywhere)
for img in "${BASES[@]}"; do
  f=${img//[:\/]/_}
  id=$(kiln_base_id "$(ref_of "$img")")
  if [ "$(cat "$IMAGES/$f.id" 2>/dev/null)" != "$id" ]; then
    rm -f "$IMAGES/$f.oci.tar" "$IMAGES/$f.docker.tar"
    "$KILN" save --root "$KBASE" --format oci -o "$IMAGES/$f.oci.tar" "$img"
    "$KILN" save --root "$KBASE" --format docker -o "$IMAGES/$f.docker.tar" "$img"
    echo "$id" > "$IMAGES/$f.id"
  fi
done

if has_peer buildah; then
  command -v runc >/dev/null || apt-get install -y runc >&2
  conf=/etc/containers/containers.conf.d/50-kiln-bench.conf
  want='# Written by kiln bench/bench.sh: this VM needs runc (crun rejects hybrid cgroups)
# and ulimits within the hard limits (no CAP_SYS_RESOURCE).
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"'
  if [ "$(cat "$conf" 2>/dev/null)" != "$want" ]; then
    mkdir -p "$(dirname "$conf")"; printf '%s\n' "$want" > "$conf"
  fi
  mkdir -p "$BROOT" "$BRUN" "$BTMP"
  for img in "${BASES[@]}"; do
    f=${img//[:\/]/_}
    ref=$(ref_of "$img")
    have=$(bh images --no-trunc --format '{{.ID}}' "$ref" 2>/dev/null | head -n1 || true)
    if [ "sha256:${have#sha256:}" != "$(cat "$IMAGES/$f.id")" ]; then
      bh rmi -f "$ref" >/dev/null 2>&1 || true
      skopeo copy -q "oci-archive:$IMAGES/$f.oci.tar" "containers-storage:[overlay@$BROOT+$BRUN]$ref" >&2
    fi
  done
fi

if has_peer docker; then
  for img in "${BASES[@]}"; do
    f=${img//[:\/]/_}
    have=$(dk image inspect -f '{{.Id}}' "$img" 2>/dev/null || true)
    [ "$have" = "$(cat "$IMAGES/$f.id")" ] || dk load -q -i "$IMAGES/$f.docker.tar" >&2
  done
fi

BASE_IDS=()
for img in "${BASES[@]}"; do BASE_IDS+=("$(cat "$IMAGES/${img//[:\/]/_}.id")"); done

# ---------------------------------------------------------------- per-builder actions

reset_kiln() { rm -rf "$KROOT"; cp -a "$KBASE" "$KROOT"; }
reset_buildah() {
  bh rm --all >/dev/null 2>&1 || true
  local id keep ids=()
  for id in $(bh images -a -q --no-trunc | sort -u); do
    keep=0
    for k in "${BASE_IDS[@]}"; do [ "sha256:${id#sha256:}" = "$k" ] && keep=1; done
    [ $keep = 1 ] || ids+=("$id")
  done
  [ ${#ids[@]} -eq 0 ] || bh rmi -f "${ids[@]}" >/dev/null 2>&1 || true
  rm -rf "$BTMP"/buildah-cache*  # cache mounts live under TMPDIR || true
}
reset_docker() {
  local ids
  ids=$(dk images -q --filter 'reference=bench/*')
  # shellcheck disable=SC2086 # one id per word
  [ -z "$ids" ] || dk rmi -f $ids >/dev/null 2>&1 || true
  dk builder prune -af >/dev/null
  dk image prune -f >/dev/null
}

# build PEER CASE TARGET LOG
build_cmd() {
  local b=$1 c=$2 tgt=$3 log=$4 ctx=$CTX/$2 targ=()
  [ -n "$tgt" ] && targ=(--target "$tgt")
  case $b in
    kiln) "$KILN" build --root "$KROOT" --progress json -t "bench/$c" "${targ[@]}" "$ctx" >>"$log" 2>&1 ;;
    buildah) bh bud --layers -t "bench/$c" "${targ[@]}" "$ctx" >>"$log" 2>&1 ;;
    docker) DOCKER_BUILDKIT=1 dk build --progress=plain -t "bench/$c" "${targ[@]}" "$ctx" >>"$log" 2>&1 ;;
  esac
}
export_cmd() {
  local b=$1 c=$2 log=$3 out=$WORK/out/$1.tar
  rm -f "$out"
  case $b in
    kiln) "$KILN" save --root "$KROOT" -o "$out" "bench/$c" >>"$log" 2>&1 ;;
    buildah) bh push -q "localhost/bench/$c:latest" "docker-archive:$out:bench/$c:latest" >>"$log" 2>&1 ;;
    docker) dk save -o "$out" "bench/$c" >>"$log" 2>&1 ;;
  esac
}

edit_target() { case $1 in c2-*) echo a.txt ;; c3-*) echo small/d000/f00000.txt ;; c4-*) echo f05.txt ;;
                           c5-*) echo app.conf ;; c6-*) echo input.txt ;; *) echo ;; esac; }

# ---------------------------------------------------------------- measurement

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RES=$WORK/results/$STAMP
mkdir -p "$RES/logs"
printf 'case\tphase\tpeer\trun\twall_s\tkiln_run_s\tload1\trc\n' > "$RES/runs.tsv"
: > "$RES/phases.tsv"
(IFS=,; echo "${PEERS[*]}") > "$RES/peers"
echo "${CASES[*]}" > "$RES/cases"
echo "$RUNS" > "$RES/runs"
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "command: bench/bench.sh --runs $RUNS --settle $SETTLE --peers $(cat "$RES/peers") ${CASES[*]}"
  echo "kiln: release build of $(cat "$KILN.commit" 2>/dev/null || echo 'unknown commit')"
  command -v buildah >/dev/null && echo "buildah: $(buildah --version)"
  has_peer docker && echo "docker: $(dk version --format '{{.Server.Version}}')"
  echo "machine: $(nproc) cpus, $(uname -r), load at start $(loadavg)"
  for n in "${NOTES[@]}"; do echo "note: $n"; done
} | tee "$RES/env.txt" >&2

FAILS=0
# one measured action: PHASE CASE PEER RUN CMD... ; appends to runs.tsv
measure() {
  local p=$1 c=$2 b=$3 i=$4 log=$RES/logs/$2.$1.$3.$4.log l t0 t1 rc=0 x=NA
  shift 4
  l=$(load1)
  : > "$log"
  t0=$(date +%s.%N)
  "$@" "$log" || rc=$?
  t1=$(date +%s.%N)
  local wall; wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')
  if [ "$b" = kiln ] && [ "$p" != export ] && [ $rc = 0 ]; then x=$(crit_exec "$log"); fi
  if [ $rc != 0 ]; then
    FAILS=$((FAILS + 1))
    note "   FAILED ($rc): $b $p $c run $i, log $log:"; tail -n 5 "$log" | sed 's/^/     /' >&2
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$p" "$b" "$i" "$wall" "$x" "$l" "$rc" >> "$RES/runs.tsv"
  note "   $(printf '%-7s %-6s run %s: %8ss  (RUN %s, load1 %s)' "$b" "$p" "$i" "$wall" "$x" "$l")"
}
phase_start() { # CASE PHASE
  local la; la=$(loadavg)
  printf '%s\t%s\t%s\n' "$1" "$2" "$la" >> "$RES/phases.tsv"
  note "== $1 $2 (load before: $la)"
}

for c in "${CASES[@]}"; do
  "$BENCH/cases/gen-contexts.sh" "$CTX" "$c"
  phases=(cold warm edit export)
  [ "$c" = c2-multistage-parallel ] && phases=(cold-a cold warm edit export)
  [ -n "$(edit_target "$c")" ] || phases=("${phases[@]/edit}")
  for p in "${phases[@]}"; do
    [ -n "$p" ] || continue
    phase_start "$c" "$p"
    if [ "$p" = warm ]; then
      for b in "${PEERS[@]}"; do build_cmd "$b" "$c" "" "$RES/logs/$c.warmup.$b.log" || true; done
    fi
    for i in $(seq 1 "$RUNS"); do
      for b in "${PEERS[@]}"; do
        case $p in
          cold|cold-a)
            "reset_$b"; sync
            [ "$SETTLE" = 0 ] || sleep "$SETTLE"
            tgt=""; [ "$p" = cold-a ] && tgt=a
            measure "$p" "$c" "$b" "$i" build_cmd "$b" "$c" "$tgt" ;;
          warm) measure "$p" "$c" "$b" "$i" build_cmd "$b" "$c" "" ;;
          edit)
            printf 'edit %s %s\n' "$b" "$(date +%s%N)" > "$CTX/$c/$(edit_target "$c")"
            measure "$p" "$c" "$b" "$i" build_cmd "$b" "$c" "" ;;
          export) measure "$p" "$c" "$b" "$i" export_cmd "$b" "$c" ;;
        esac
      done
    done
  done
done

{
  cat "$RES/env.txt"
  echo
  report "$RES"
} > "$RES/report.md"
echo
cat "$RES/report.md"
echo
echo "results: $RES (runs.tsv, phases.tsv, logs/)"
[ $FAILS = 0 ] || { note "bench: $FAILS measured runs failed (see above)"; exit 1; }
