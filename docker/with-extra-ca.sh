#!/bin/sh
# Builder stage only: runs a command that trusts the build's extra CA certificates
# (docker/extra-ca/*.crt|*.pem, copied to /tmp/extra-ca) on top of the base image's bundle.
# Without extra certificates the command runs unchanged.
set -eu
extra=$(find /tmp/extra-ca -maxdepth 1 -type f \( -name '*.crt' -o -name '*.pem' \) 2>/dev/null | sort)
if [ -n "$extra" ]; then
  bundle=/tmp/build-ca-bundle.pem
  if [ ! -s "$bundle" ]; then
    system=/etc/ssl/certs/ca-certificates.crt
    # shellcheck disable=SC2086 # one path per line, no spaces in them
    { [ -f "$system" ] && cat "$system"; cat $extra; } >"$bundle"
  fi
  export PIP_CERT="$bundle" SSL_CERT_FILE="$bundle" REQUESTS_CA_BUNDLE="$bundle"
fi
exec "$@"
