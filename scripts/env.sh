# Sourced by the other scripts: common paths.
KILN_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export KILN_REPO
for d in "$HOME/.cargo/bin" /usr/local/cargo/bin; do
  case ":$PATH:" in *":$d:"*) ;; *) [ -d "$d" ] && PATH="$d:$PATH" ;; esac
done
export PATH
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$KILN_REPO/target}"
