#!/usr/bin/env bash
# Regenerates the TEST-ONLY PKI of examples/05-client-mtls:
#   server-ca.pem  "Private LLM Test Server CA": issued the backend's certificate;
#                  the gateway trusts it (caCertificates)
#   server.pem/.key  the stand-in backend llm.private.example (for openssl s_server)
#   client-ca.pem  "Tollgate Example Test Client CA": issued the gateway's client
#                  certificate; the backend trusts it (s_server -CAfile)
#   client.pem/.key  the gateway's client certificate: URI
#                  spiffe://tollgate.example/gateway/egress, DNS egress.tollgate.example,
#                  clientAuth (clientCertificate in the policy)
# EC P-256 keys, valid for 100 years so tests never expire; both CA keys are
# deleted. Never trust these anywhere but in this example.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
days=36500
org="tollgate example 05 (TEST ONLY)"

ca() { # ca NAME "Common Name"
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$tmp/$1.key" -out "$1.pem" -days "$days" -sha256 \
    -subj "/O=$org/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash"
}

leaf() { # leaf NAME ISSUER "Common Name" EKU SAN
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$1.key" -out "$tmp/$1.csr" -subj "/O=$org/CN=$3"
  cat > "$tmp/$1.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=$4
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
subjectAltName=$5
EXT
  openssl x509 -req -in "$tmp/$1.csr" -CA "$2.pem" -CAkey "$tmp/$2.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$days" -sha256 \
    -extfile "$tmp/$1.ext" -out "$1.pem"
  chmod 600 "$1.key"
}

ca server-ca "Private LLM Test Server CA"
ca client-ca "Tollgate Example Test Client CA"
leaf server server-ca llm.private.example serverAuth "DNS:llm.private.example"
leaf client client-ca egress.tollgate.example clientAuth \
  "URI:spiffe://tollgate.example/gateway/egress,DNS:egress.tollgate.example"

openssl verify -CAfile server-ca.pem server.pem
openssl verify -CAfile client-ca.pem -purpose sslclient client.pem
