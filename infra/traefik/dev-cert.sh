#!/bin/sh
# Creates a self-signed development certificate for $BIPLANE_DOMAIN and its sub-hosts in $CERT_DIR, once.
# Run by Compose's `certs` one-shot (alpine, installs openssl) and by tests/infra; never commit its output.
set -eu
CERT_DIR="${CERT_DIR:-/certs}"
DOMAIN="${BIPLANE_DOMAIN:?set BIPLANE_DOMAIN}"
if [ -s "$CERT_DIR/dev.crt" ] && [ -s "$CERT_DIR/dev.key" ]; then
  echo "certificate already present in $CERT_DIR"
  exit 0
fi
if ! command -v openssl >/dev/null 2>&1; then
  apk add --no-cache openssl >/dev/null
fi
mkdir -p "$CERT_DIR"
umask 077
openssl req -x509 -newkey rsa:2048 -sha256 -days 825 -nodes \
  -keyout "$CERT_DIR/dev.key" -out "$CERT_DIR/dev.crt" \
  -subj "/CN=$DOMAIN" \
  -addext "subjectAltName=DNS:$DOMAIN,DNS:*.$DOMAIN" 2>/dev/null
chmod 644 "$CERT_DIR/dev.crt"
echo "created a self-signed certificate for $DOMAIN and *.$DOMAIN in $CERT_DIR"
