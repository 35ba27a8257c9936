#!/usr/bin/env bash
# Development certificates for a TLS (and mTLS) Polytune cluster, made with openssl:
#   scripts/make-dev-certs.sh DIR [SERVER_NAME...]
# writes DIR/ca.{pem,key} (a private CA), DIR/server.{pem,key} (for polytune-coordinator
# --tls-cert/--tls-key; valid for localhost, 127.0.0.1 and each SERVER_NAME) and
# DIR/client.{pem,key} (for workers or the CLI when the coordinator requires client
# certificates). Not for production: the CA key sits next to the certificates.
set -euo pipefail
dir=${1:?usage: make-dev-certs.sh DIR [SERVER_NAME...]}
shift
mkdir -p "$dir"
cd "$dir"
san="DNS:localhost,IP:127.0.0.1"
for name in "$@"; do san="$san,DNS:$name"; done
days=825
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days "$days" -subj "/CN=polytune dev CA" \
  2>/dev/null
make_cert() {  # name, subject, extensions
  openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
  printf '%s\n' "$3" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.pem" -days "$days" \
    -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
make_cert server "/CN=polytune-coordinator" "subjectAltName=$san
extendedKeyUsage=serverAuth"
make_cert client "/CN=polytune-worker" "extendedKeyUsage=clientAuth"
chmod 600 ./*.key
echo "wrote $dir/{ca,server,client}.{pem,key}"
