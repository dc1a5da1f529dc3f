#!/bin/sh
# geni-am guest agent on the virtio-serial port org.geni.agent.0 (respawned by init).
# Requests are one line each: "PING" -> "PONG <hostname>"; "USERS <base64 of login key lines>"
# -> "OK USERS <n>" once the accounts match. Anything else -> "ERR ...".
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
. /geni/users.sh
port=""
for p in /sys/class/virtio-ports/*; do
  [ "$(cat "$p/name" 2>/dev/null)" = org.geni.agent.0 ] && port="/dev/${p##*/}"
done
[ -n "$port" ] || { sleep 3600; exit 0; }
exec 3<>"$port"
while true; do
  if read -r cmd arg <&3; then
    case "$cmd" in
      PING) echo "PONG $(hostname)" >&3 ;;
      USERS)
        if echo "$arg" | base64 -d > /run/geni/users.new 2>/dev/null; then
          apply_users /run/geni/users.new
          echo "OK USERS $(grep -c . /run/geni/users.new)" >&3
        else
          echo "ERR USERS bad payload" >&3
        fi ;;
      "") ;;
      *) echo "ERR unknown request $cmd" >&3 ;;
    esac
  else
    sleep 0.3
  fi
done
