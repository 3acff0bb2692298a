#!/usr/bin/env bash
# Regenerates the TEST-ONLY PKI of examples/06-custom-ca-crl-pinning:
#   ca-bundle.pem  the trust bundle tollgate reads: test root CA, then the
#                  intermediate CA it signed (both private keys are deleted)
#   crl.pem        two CRLs: the root's (revokes nothing) and the
#                  intermediate's (revokes revoked.pem)
#   server.pem/.key  the vendor's current certificate (api.vendor.example,
#                  issued by the intermediate, leaf only) and key, for s_server
#   backup.key     the vendor's announced next key (its SPKI is pinned)
#   revoked.pem    a certificate for api.vendor.example on backup.key, issued
#                  by the intermediate and then revoked
# and prints the pins to put in ../policies.yaml. EC P-256 keys; certificates
# and CRLs valid for 100 years so tests never expire. Never trust these
# anywhere but in this example.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
days=36500
org="tollgate example 06 (TEST ONLY)"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }

# sign CSR ISSUER_CERT ISSUER_KEY EXTFILE OUT
sign() {
  openssl x509 -req -in "$1" -CA "$2" -CAkey "$3" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$days" -sha256 \
    -extfile "$4" -out "$5"
}

# Root CA.
key "$tmp/root.key"
openssl req -x509 -new -key "$tmp/root.key" -out "$tmp/root.pem" -days "$days" -sha256 \
  -subj "/O=$org/CN=Vendor Test Root CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash"

# Intermediate CA, signed by the root; may sign leaves only.
key "$tmp/int.key"
openssl req -new -key "$tmp/int.key" -out "$tmp/int.csr" -subj "/O=$org/CN=Vendor Test Issuing CA 1"
cat > "$tmp/int.ext" <<'EXT'
basicConstraints=critical,CA:TRUE,pathlen:0
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EXT
sign "$tmp/int.csr" "$tmp/root.pem" "$tmp/root.key" "$tmp/int.ext" "$tmp/int.pem"

cat > "$tmp/leaf.ext" <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
subjectAltName=DNS:api.vendor.example
EXT

# The vendor's current certificate and its announced next key.
key server.key
key backup.key
openssl req -new -key server.key -out "$tmp/server.csr" -subj "/O=$org/CN=api.vendor.example"
sign "$tmp/server.csr" "$tmp/int.pem" "$tmp/int.key" "$tmp/leaf.ext" server.pem
openssl req -new -key backup.key -out "$tmp/revoked.csr" -subj "/O=$org/CN=api.vendor.example"
sign "$tmp/revoked.csr" "$tmp/int.pem" "$tmp/int.key" "$tmp/leaf.ext" revoked.pem

# CRLs: one per CA, since Envoy requires a CRL for every CA of a chain once
# it has a CRL for any of them.
crl() { # crl NAME CA_CERT CA_KEY [CERT_TO_REVOKE]
  mkdir -p "$tmp/$1"
  : > "$tmp/$1/index.txt"
  echo 1000 > "$tmp/$1/crlnumber"
  cat > "$tmp/$1/ca.cnf" <<CNF
[ca]
default_ca = this_ca
[this_ca]
database = $tmp/$1/index.txt
crlnumber = $tmp/$1/crlnumber
default_md = sha256
crl_extensions = crl_ext
[crl_ext]
authorityKeyIdentifier = keyid:always
CNF
  if [ $# -eq 4 ]; then
    openssl ca -batch -config "$tmp/$1/ca.cnf" -cert "$2" -keyfile "$3" -revoke "$4" -crl_reason superseded
  fi
  openssl ca -batch -config "$tmp/$1/ca.cnf" -cert "$2" -keyfile "$3" -gencrl -crldays "$days" -out "$tmp/$1.crl"
}
crl root "$tmp/root.pem" "$tmp/root.key"
crl int "$tmp/int.pem" "$tmp/int.key" revoked.pem
cat "$tmp/root.crl" "$tmp/int.crl" > crl.pem
cat "$tmp/root.pem" "$tmp/int.pem" > ca-bundle.pem
chmod 600 server.key backup.key

# Checks: the current certificate verifies through the bundle with CRLs, the
# revoked one does not.
openssl verify -crl_check_all -CAfile ca-bundle.pem -CRLfile crl.pem server.pem
if openssl verify -crl_check_all -CAfile ca-bundle.pem -CRLfile crl.pem revoked.pem 2>/dev/null; then
  echo "revoked.pem is not revoked" >&2; exit 1
fi

spki() { openssl pkey -in "$1" -pubout -outform der | openssl dgst -sha256 -binary | base64; }
echo "pins for ../policies.yaml:"
echo "  spki (backup.key):          $(spki backup.key)"
echo "  certificateHashes (server): $(openssl x509 -in server.pem -outform der | openssl dgst -sha256 -hex | sed 's/.*= //')"
