#!/bin/sh
# Generates TEST-ONLY certificates for the xds-mtls example: a CA, a server
# certificate for tollgate (localhost, 127.0.0.1) and three Envoy client
# certificates. The keys are unencrypted and short-lived; never use them
# for anything but trying tollgate out on one host.
#
#   ./gen-certs.sh [OUT_DIR]     (default: certs)
set -eu
out=${1:-certs}
days=30
mkdir -p "$out"
cd "$out"

newkey="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

# The CA that signs both tollgate's and the Envoys' certificates. In
# production these are usually two CAs: the Envoys trust tollgate's
# (--xds-ca-file), tollgate trusts the Envoys' (--xds-client-ca).
openssl req -x509 $newkey -keyout ca.key -out ca.crt -days "$days" \
  -subj "/CN=tollgate xds-mtls example CA (TEST ONLY)" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

# issue NAME SUBJECT_ALT_NAMES EXTENDED_KEY_USAGE
issue() {
  openssl req $newkey -keyout "$1.key" -out "$1.csr" -subj "/CN=$1" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n' "$2" "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
    -days "$days" -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

# tollgate's server certificate: Envoys dial 127.0.0.1 and check the IP SAN.
issue tollgate "DNS:localhost,IP:127.0.0.1" serverAuth
# An Envoy with a SPIFFE ID, bound to gateway egress in tollgate.toml.
issue envoy-egress "URI:spiffe://corp.example/gateway/egress" clientAuth
# An Envoy identified by its DNS name (no URI SAN), also bound to egress.
issue envoy-vm-7 "DNS:vm-7.corp.example" clientAuth
# An Envoy whose identity is bound to nothing: tollgate refuses it.
issue envoy-rogue "URI:spiffe://corp.example/gateway/rogue" clientAuth

rm -f ca.srl
chmod 600 ./*.key
echo "test-only certificates written to $(pwd)"
