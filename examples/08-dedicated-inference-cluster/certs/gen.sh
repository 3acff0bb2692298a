#!/usr/bin/env bash
# Regenerates the TEST-ONLY CA of examples/08-dedicated-inference-cluster:
#   pool-ca.pem  "Inference Pool Test Root CA", which would sign the model
#                servers' certificates (its key is deleted at once)
# EC P-256, valid for 100 years so tests never expire. Never trust it
# anywhere but in this example.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$tmp/ca.key" -out pool-ca.pem -days 36500 -sha256 \
  -subj "/O=tollgate example 08 (TEST ONLY)/CN=Inference Pool Test Root CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash"
