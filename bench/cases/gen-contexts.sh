#!/usr/bin/env bash
# (Re)generate the build contexts of the benchmark cases (case definitions taken over
# from the shared lab's cases/gen-contexts.sh; adapted to write the contexts outside the
# repository).  Deterministic content and a fixed mtime, so every run starts from
# identical contexts.  Idempotent: the 300 MiB file of c3 is only rewritten when missing
# or of the wrong size.
#
# usage: gen-contexts.sh OUT_DIR [CASE...]     (default: all cases)
# Each context is OUT_DIR/<case>/ and holds a copy of bench/cases/<case>/Dockerfile.
set -euo pipefail
C=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: gen-contexts.sh OUT_DIR [CASE...]}
shift
EPOCH=1700000000
fix() { find "$@" -exec touch -h -d "@$EPOCH" {} +; }

cases=("$@")
if [ ${#cases[@]} -eq 0 ]; then
  for d in "$C"/c*/; do cases+=("$(basename "$d")"); done
fi

for c in "${cases[@]}"; do
  [ -f "$C/$c/Dockerfile" ] || { echo "gen-contexts: unknown case $c" >&2; exit 2; }
  d=$out/$c
  mkdir -p "$d"
  cp "$C/$c/Dockerfile" "$d/Dockerfile"
  case $c in
    c2-*)
      # one small input per stage (the "edit" target is a.txt)
      echo "stage a input" > "$d/a.txt"
      echo "stage b input" > "$d/b.txt"
      ;;
    c3-*)
      # 20,000 small files in 200 dirs + 300 MiB incompressible file
      if [ "$(stat -c %s "$d/big.bin" 2>/dev/null || echo 0)" != 314572800 ]; then
        { openssl enc -aes-256-ctr -nosalt -pbkdf2 -pass pass:lab-c3 </dev/zero 2>/dev/null || true; } \
          | head -c 314572800 > "$d/big.bin.tmp"
        mv "$d/big.bin.tmp" "$d/big.bin"
      fi
      if [ "$(find "$d/small" -type f 2>/dev/null | wc -l)" != 20000 ]; then
        rm -rf "$d/small"
        awk -v root="$d/small" 'BEGIN {
          for (d = 0; d < 200; d++) system(sprintf("mkdir -p %s/d%03d", root, d));
          for (i = 0; i < 20000; i++) {
            f = sprintf("%s/d%03d/f%05d.txt", root, int(i / 100), i);
            printf("file %05d\nlorem ipsum dolor sit amet, consectetur adipiscing elit %d\n", i, i * 7919) > f;
            close(f);
          } }'
      fi
      # the edit target: restore its original content
      printf 'file 00000\nlorem ipsum dolor sit amet, consectetur adipiscing elit 0\n' > "$d/small/d000/f00000.txt"
      ;;
    c4-*)
      # ten small files (edit target: f05.txt => steps 15..30 rebuild)
      for i in $(seq -w 1 10); do echo "content of file $i" > "$d/f$i.txt"; done
      ;;
    c5-*)
      # small config copied after the apt layer (edit target)
      printf '# app config\nlisten=8080\n' > "$d/app.conf"
      ;;
    c6-*)
      # input for the cache-mount step (edit target)
      echo "c6 input" > "$d/input.txt"
      ;;
  esac
  fix "$d"
done
