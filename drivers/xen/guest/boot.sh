#!/bin/sh
# geni-am guest boot: runs once as busybox init's sysinit. Reads /geni/config and /geni/users
# (the per-sliver config archive appended to the initramfs), configures the guest, starts
# dropbear (keys only) and says GENI-READY on the console when SSH answers.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
/bin/busybox --install -s 2>/dev/null
mkdir -p /proc /sys /dev /tmp /run /home /root /etc/dropbear /run/geni
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
say() { echo "geni-guest: $*"; }
for m in $(cat /lib/modules/geni.order); do
  insmod "/lib/modules/$m.ko" 2>/dev/null || say "module $m did not load"
done
ip link set lo up


dev_by_mac() {  # the interface whose MAC is $1 (the kernel may take a moment to name it)
  for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
    for d in /sys/class/net/*; do
      [ "$(cat "$d/address" 2>/dev/null)" = "$1" ] && { echo "${d##*/}"; return 0; }
    done
    sleep 0.2
  done
  return 1
}

# Interfaces get the names the request gives them (eth0 the management NIC, eth1... the links'
# NICs in request order, as in containers), found by MAC. Two passes: a wanted name may be
# another NIC's kernel name now.
n=0
while read -r kind a b c; do
  [ "$kind" = iface ] && [ "$c" != "-" ] && [ -n "$c" ] || continue
  if dev=$(dev_by_mac "$a"); then
    ip link set dev "$dev" down
    ip link set dev "$dev" name "geni-tmp$n" || say "cannot rename $dev"
    n=$((n + 1))
  fi
done < /geni/config
while read -r kind a b c; do
  [ "$kind" = iface ] && [ "$c" != "-" ] && [ -n "$c" ] || continue
  if dev=$(dev_by_mac "$a") && [ "$dev" != "$c" ]; then
    ip link set dev "$dev" name "$c" || say "cannot name $dev $c"
  fi
done < /geni/config

while read -r kind a b c; do
  case "$kind" in
    hostname) hostname "$a"; echo "$a" > /etc/hostname ;;
    iface)
      if dev=$(dev_by_mac "$a"); then
        [ "$b" = "-" ] || ip addr add "$b" dev "$dev"
        ip link set "$dev" up
        say "interface $dev ($a) ${b}"
      else
        say "no interface with MAC $a"
      fi ;;
    route)
      if [ "$c" != "-" ] && dev=$(dev_by_mac "$c"); then
        if [ "$b" = "-" ]; then ip route replace "$a" dev "$dev"; else ip route replace "$a" via "$b" dev "$dev" onlink; fi
      else
        [ "$b" = "-" ] || ip route replace "$a" via "$b"
      fi || say "route $a via $b failed" ;;
    forward) echo "$a" > /proc/sys/net/ipv4/ip_forward ;;
  esac
done < /geni/config

. /geni/users.sh
apply_users /geni/users

dropbearkey -t ed25519 -f /etc/dropbear/dropbear_ed25519_host_key >/dev/null 2>&1
dropbear -r /etc/dropbear/dropbear_ed25519_host_key -s -g -w -p 22 -P /run/dropbear.pid
for _ in $(seq 1 50); do     # dropbear writes its pid file once it listens
  [ -s /run/dropbear.pid ] && break
  sleep 0.1
done
say "GENI-READY $(hostname)"
