#!/usr/bin/env bash
# Starts the test registries (Debian's docker-registry, distribution v2) on 127.0.0.1,
# idempotently and without systemd:
#   :5100  plain HTTP, no auth
#   :5101  TLS (self-signed CA at $DIR/ca.crt) + htpasswd basic auth (kiln / kiln-secret)
#   :5102  plain HTTP + token auth: realm http://127.0.0.1:5103/token, service
#          kiln-test-registry, issuer kiln-test-issuer; tokens are ES256 JWTs signed with
#          $DIR/token.pk8 (PKCS#8 DER) carrying $DIR/token.der in x5c. The token server is
#          the test harness's (crates/kiln-cli/tests/registry_common), not a daemon.
# State lives in $KILN_TEST_REGISTRY_DIR (default /var/lib/kiln-test-registry as root,
# else /tmp/kiln-test-registry-$UID). Safe to run concurrently (flock) and repeatedly; an
# instance whose config changed since it was started (by an older version of this script)
# is restarted. Each registry writes its access log (combined format) to $DIR/<port>/log,
# which tests read to count requests. `scripts/registry.sh stop` stops them.
# Ports 5000/5001 are left alone: the shared benchmark lab runs its own registries there.
set -euo pipefail

if [ "$(id -u)" = 0 ]; then
  DIR=${KILN_TEST_REGISTRY_DIR:-/var/lib/kiln-test-registry}
else
  DIR=${KILN_TEST_REGISTRY_DIR:-/tmp/kiln-test-registry-$(id -u)}
fi
USER_NAME=kiln
PASSWORD=kiln-secret
mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9

log() { printf '== registry: %s\n' "$*" >&2; }

if ! command -v docker-registry >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    log "installing docker-registry"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-registry openssl >&2
  else
    echo "registry.sh: docker-registry is not installed; run scripts/setup.sh as root" >&2
    exit 1
  fi
fi
# The Debian package's own systemd instance (where systemd runs) listens on :5000; ours
# use other ports, so it is left alone.

PORTS="5100 5101 5102"

stop() { # only the instances this script started (another version may share $DIR)
  local port p
  for port in $PORTS; do
    p=$DIR/$port.pid
    [ -e "$p" ] || continue
    kill "$(cat "$p")" 2>/dev/null || true
    rm -f "$p"
  done
}
if [ "${1:-}" = stop ]; then
  stop
  exit 0
fi

# --- TLS material: a CA and a server certificate for 127.0.0.1 / localhost -------------
if [ ! -s "$DIR/server.crt" ]; then
  log "creating CA and server certificate in $DIR"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=kiln test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$DIR/ca.key" -out "$DIR/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$DIR/server.key" -out "$DIR/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >"$DIR/server.ext"
  openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" \
    -CAcreateserial -days 3650 -extfile "$DIR/server.ext" -out "$DIR/server.crt.tmp" 2>/dev/null
  mv "$DIR/server.crt.tmp" "$DIR/server.crt"
fi

# --- token signing key and its self-signed certificate (the registry's trust root) ------
if [ ! -s "$DIR/token.der" ]; then
  log "creating the token signing key in $DIR"
  openssl ecparam -name prime256v1 -genkey -noout -out "$DIR/token.key" 2>/dev/null
  openssl pkcs8 -topk8 -nocrypt -in "$DIR/token.key" -outform DER -out "$DIR/token.pk8"
  openssl req -x509 -new -key "$DIR/token.key" -subj "/CN=kiln test token issuer" -days 3650 \
    -out "$DIR/token.crt" 2>/dev/null
  openssl x509 -in "$DIR/token.crt" -outform DER -out "$DIR/token.der.tmp"
  mv "$DIR/token.der.tmp" "$DIR/token.der"
fi

# --- htpasswd: distribution accepts bcrypt only ----------------------------------------
if [ ! -s "$DIR/htpasswd" ]; then
  if command -v htpasswd >/dev/null 2>&1; then
    htpasswd -nbB "$USER_NAME" "$PASSWORD" | head -n1 >"$DIR/htpasswd.tmp"
  else
    # Debian's python3 crypt module uses libxcrypt, which has bcrypt ($2b$).
    /usr/bin/python3 -W ignore -c 'import crypt,sys; print(sys.argv[1]+":"+crypt.crypt(sys.argv[2], crypt.mksalt(crypt.METHOD_BLOWFISH)))' \
      "$USER_NAME" "$PASSWORD" >"$DIR/htpasswd.tmp"
  fi
  grep -q ':\$2' "$DIR/htpasswd.tmp" || { echo "registry.sh: could not make a bcrypt htpasswd" >&2; exit 1; }
  mv "$DIR/htpasswd.tmp" "$DIR/htpasswd"
fi

config() { # port, extra YAML
  local port=$1 extra=$2
  mkdir -p "$DIR/$port/data"
  cat >"$DIR/$port/config.yml.new" <<YAML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $DIR/$port/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  secret: kiln-test-$port
$extra
YAML
  if cmp -s "$DIR/$port/config.yml.new" "$DIR/$port/config.yml"; then
    rm -f "$DIR/$port/config.yml.new"
  else
    mv "$DIR/$port/config.yml.new" "$DIR/$port/config.yml"
    # A running instance of ours serves the old config: restart it below.
    if alive "$port"; then
      log "config of :$port changed; restarting it"
      kill "$(cat "$DIR/$port.pid")" 2>/dev/null || true
      for _ in $(seq 1 50); do alive "$port" || break; sleep 0.1; done
      rm -f "$DIR/$port.pid"
    fi
  fi
}

alive() { [ -s "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }

config 5100 ""
config 5101 "  tls:
    certificate: $DIR/server.crt
    key: $DIR/server.key
auth:
  htpasswd:
    realm: kiln-test
    path: $DIR/htpasswd"

config 5102 "auth:
  token:
    realm: http://127.0.0.1:5103/token
    service: kiln-test-registry
    issuer: kiln-test-issuer
    rootcertbundle: $DIR/token.crt"

answers() { # port, scheme
  curl -s -o /dev/null --max-time 2 --cacert "$DIR/ca.crt" -w '%{http_code}' "$2://127.0.0.1:$1/v2/" 2>/dev/null | grep -Eq '^(200|401)$'
}

start() { # port, scheme
  local port=$1 scheme=$2
  if alive "$port" && answers "$port" "$scheme"; then
    return 0
  fi
  if answers "$port" "$scheme"; then
    log ":$port already answers (not started by this script); using it"
    return 0
  fi
  log "starting docker-registry on 127.0.0.1:$port ($scheme)"
  # setsid: the registry must outlive the test process that happened to start it.
  # 9>&-: the daemon must not inherit (and hold forever) this script's lock.
  setsid docker-registry serve "$DIR/$port/config.yml" >>"$DIR/$port/log" 2>&1 </dev/null 9>&- &
  echo $! >"$DIR/$port.pid"
  for _ in $(seq 1 100); do
    answers "$port" "$scheme" && return 0
    sleep 0.1
  done
  echo "registry.sh: docker-registry on :$port did not come up; see $DIR/$port/log" >&2
  tail -n 20 "$DIR/$port/log" >&2 || true
  exit 1
}

start 5100 http
start 5101 https
start 5102 http
echo "$DIR"
