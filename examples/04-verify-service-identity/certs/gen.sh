#!/usr/bin/env bash
# Regenerates the TEST-ONLY PKI of examples/04-verify-service-identity:
#   ca.pem      test root CA "Partner Test Root CA" (its key is deleted)
#   server.pem  leaf for the stand-in backend: DNS inference.partner.example,
#               URI spiffe://partner.example/ns/inference/sa/model-server
#   server.key  its key, only for running the stand-in with openssl s_server
# EC P-256 keys, valid for 100 years so tests never expire. Never trust
# these anywhere but in this example.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
days=36500

# Root CA: self-signed, only for signing certificates and CRLs.
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$tmp/ca.key" -out ca.pem -days "$days" -sha256 \
  -subj "/O=tollgate example 04 (TEST ONLY)/CN=Partner Test Root CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash"

# Server leaf: both a DNS name and a SPIFFE ID.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout server.key -out "$tmp/server.csr" \
  -subj "/O=tollgate example 04 (TEST ONLY)/CN=inference.partner.example"
cat > "$tmp/server.ext" <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
subjectAltName=DNS:inference.partner.example,URI:spiffe://partner.example/ns/inference/sa/model-server
EXT
openssl x509 -req -in "$tmp/server.csr" -CA ca.pem -CAkey "$tmp/ca.key" \
  -set_serial "0x$(openssl rand -hex 16)" -days "$days" -sha256 \
  -extfile "$tmp/server.ext" -out server.pem

chmod 600 server.key
openssl verify -CAfile ca.pem server.pem
