#!/bin/bash
# Container health check: the broker answers a STOMP CONNECT on HOST:PORT.
#
#   stompd-healthcheck [HOST] [PORT]          (defaults 127.0.0.1 61613)
#
# Healthy when the first bytes back are a CONNECTED frame, or an ERROR frame (a
# broker without anonymous access refuses the login, but it is up and serving).
# Needs only bash (/dev/tcp) and coreutils' timeout and head.
set -u
host="${1:-127.0.0.1}"
port="${2:-61613}"
exec timeout 4 bash -c '
  exec 3<>"/dev/tcp/$0/$1" || exit 1
  printf "CONNECT\naccept-version:1.0,1.1,1.2\nhost:%s\nheart-beat:0,0\n\n\0" "$0" >&3
  reply="$(head -c 9 <&3)"
  printf "DISCONNECT\n\n\0" >&3 2>/dev/null
  case "$reply" in
    CONNECTED*|ERROR*) exit 0 ;;
    *) echo "unexpected reply from $0:$1: ${reply:-nothing}" >&2; exit 1 ;;
  esac
' "$host" "$port"
