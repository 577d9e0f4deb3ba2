#!/bin/bash
# Container health check of the CryoProxy image: GET /health/ready on the admin endpoint with bash's
# /dev/tcp, so that the image needs neither curl nor wget. Healthy only on HTTP 200 (the primary of
# every database answered its last probe); 503 (not probed yet, primary down, shutting down),
# no answer or a refused connection are unhealthy.
# The admin endpoint must listen on the container's loopback: admin.host 0.0.0.0 (as in
# deploy/cryoproxy/cryoproxy.yaml) or 127.0.0.1. CRYOPROXY_ADMIN__PORT overrides the port, as it
# does for the proxy.
port="${CRYOPROXY_ADMIN__PORT:-9187}"
exec 3<>"/dev/tcp/127.0.0.1/${port}" || exit 1
printf 'GET /health/ready HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
IFS= read -r -t 5 status <&3 || exit 1
case "$status" in
  "HTTP/1."?" 200"*) exit 0 ;;
  *) echo "not ready: ${status%$'\r'}"; exit 1 ;;
esac
