#!/usr/bin/env bash
# For clusters without cert-manager: makes the cluster CA and a certificate for each
# component (scheduler, seed, peer) with openssl, and prints the three Secrets the pods
# mount at /etc/p2pimg-tls (p2pimg-scheduler-tls, p2pimg-seed-tls, p2pimg-peer-tls; keys
# tls.crt, tls.key, ca.crt, as cert-manager writes them), or applies them with kubectl.
#
#   deploy/kubernetes/tls/make-secrets.sh [--out DIR=./p2pimg-tls] [--namespace NS=p2pimg]
#       [--server-name NAME=p2pimg.p2pimg.svc] [--days N=365] [--ca-days N=3650] [--apply]
#
# DIR keeps the CA (ca.crt, ca.key) and each component's NAME.crt and NAME.key. Run it again
# with the same DIR to renew: the CA is reused and the three certificates are made afresh;
# apply the Secrets again and the pods load the new files without a restart. Keep ca.key
# safe (whoever has it can make certificates the cluster trusts), or delete DIR to start a
# new CA (then apply all three Secrets together: certificates of different CAs refuse each
# other). NAME must be the tls.server_name of scheduler.toml, seed.toml and peerd.toml.
# Without --apply the Secrets go to stdout (YAML); apply them with `kubectl apply -f -`.
set -euo pipefail
OUT=./p2pimg-tls; NS=p2pimg; SERVER_NAME=p2pimg.p2pimg.svc; DAYS=365; CA_DAYS=3650; APPLY=0
COMPONENTS=(scheduler seed peer)
while (($#)); do
  case $1 in
    --out) OUT=$2; shift 2 ;;
    --namespace) NS=$2; shift 2 ;;
    --server-name) SERVER_NAME=$2; shift 2 ;;
    --days) DAYS=$2; shift 2 ;;
    --ca-days) CA_DAYS=$2; shift 2 ;;
    --apply) APPLY=1; shift ;;
    -h|--help) sed -n 2,16p "$0"; exit 0 ;;
    *) echo "make-secrets.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $DAYS =~ ^[1-9][0-9]*$ && $CA_DAYS =~ ^[1-9][0-9]*$ ]] || { echo "make-secrets.sh: --days and --ca-days take a number of days" >&2; exit 2; }
[[ $SERVER_NAME =~ ^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$ ]] || { echo "make-secrets.sh: --server-name must be a DNS name, not $SERVER_NAME" >&2; exit 2; }
command -v openssl >/dev/null || { echo "make-secrets.sh: openssl is not installed" >&2; exit 1; }
((APPLY == 0)) || command -v kubectl >/dev/null || { echo "make-secrets.sh: --apply needs kubectl" >&2; exit 1; }

umask 077
mkdir -p "$OUT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ECDSA P-256 keys in PKCS#8 (what cert-manager writes with encoding PKCS8).
new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [[ -s $OUT/ca.crt && -s $OUT/ca.key ]]; then
  echo "make-secrets.sh: reusing the CA in $OUT" >&2
else
  cat >"$work/ca.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
x509_extensions = ext
[dn]
CN = p2pimg-ca
[ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
EOF
  new_key "$work/ca.key"
  openssl req -x509 -new -config "$work/ca.cnf" -key "$work/ca.key" -sha256 -days "$CA_DAYS" -out "$work/ca.crt"
  mv "$work/ca.key" "$OUT/ca.key"
  mv "$work/ca.crt" "$OUT/ca.crt"
  echo "make-secrets.sh: made a new CA in $OUT (ca.crt, ca.key)" >&2
fi

# Every component's certificate serves as a server's and as a client's, and carries
# SERVER_NAME (checked instead of the dialed address).
cat >"$work/leaf.cnf" <<EOF
[ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:$SERVER_NAME
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
for c in "${COMPONENTS[@]}"; do
  new_key "$work/$c.key"
  openssl req -new -key "$work/$c.key" -subj "/CN=p2pimg-$c" -out "$work/$c.csr"
  openssl x509 -req -in "$work/$c.csr" -CA "$OUT/ca.crt" -CAkey "$OUT/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$DAYS" -sha256 \
    -extfile "$work/leaf.cnf" -extensions ext -out "$work/$c.crt" 2>/dev/null
  openssl verify -CAfile "$OUT/ca.crt" -purpose sslserver "$work/$c.crt" >/dev/null
  openssl verify -CAfile "$OUT/ca.crt" -purpose sslclient "$work/$c.crt" >/dev/null
  mv "$work/$c.key" "$OUT/$c.key"
  mv "$work/$c.crt" "$OUT/$c.crt"
done
echo "make-secrets.sh: certificates for ${COMPONENTS[*]} (DNS:$SERVER_NAME, $DAYS days) in $OUT" >&2

b64() { base64 <"$1" | tr -d '\n'; }
secrets() {
  for c in "${COMPONENTS[@]}"; do
    cat <<EOF
---
apiVersion: v1
kind: Secret
type: kubernetes.io/tls
metadata:
  name: p2pimg-$c-tls
  namespace: $NS
  labels:
    app.kubernetes.io/part-of: p2pimg
data:
  tls.crt: $(b64 "$OUT/$c.crt")
  tls.key: $(b64 "$OUT/$c.key")
  ca.crt: $(b64 "$OUT/ca.crt")
EOF
  done
}
if ((APPLY)); then
  secrets | kubectl apply -f -
else
  secrets
fi
