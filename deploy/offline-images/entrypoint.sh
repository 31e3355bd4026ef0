#!/bin/sh
# As the redis and nats images' entrypoints: arguments that start with "-" are the server's (SERVER), so a pod
# or compose service that gives only arguments runs the server with them.
set -e
if [ "${1#-}" != "$1" ]; then
  set -- "$SERVER" "$@"
fi
exec "$@"
