#!/bin/sh
# A self-signed certificate for a first try (replace it with the county's own before real use).
# Usage: deploy/gen-selfsigned.sh [DIR] [HOSTNAME]
set -eu
dir="${1:-/etc/qunzhi/tls}"
name="${2:-qunzhi.local}"
mkdir -p "$dir"
umask 077
openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=$name" \
  -addext "subjectAltName=DNS:$name,DNS:localhost,IP:127.0.0.1" \
  -keyout "$dir/qunzhi.key" -out "$dir/qunzhi.crt" 2>/dev/null
echo "证书已生成：$dir/qunzhi.crt（自签名，仅供试用）"
