# geni-am guest accounts: apply_users FILE sets every account's authorized_keys from FILE
# (lines "login key..."; a login alone keeps the account with no key). Accounts not named lose
# their keys. Passwords are "*" (no password login; dropbear runs with -s -g -w anyway).
apply_users() {
  rm -rf /run/geni/new && mkdir -p /run/geni/new
  while read -r login key; do
    [ -n "$login" ] || continue
    touch "/run/geni/new/$login"
    [ -n "$key" ] && echo "$key" >> "/run/geni/new/$login"
  done < "$1"
  uid=$(( $(wc -l < /etc/passwd) + 1000 ))
  for f in /run/geni/new/*; do
    [ -e "$f" ] || continue
    login=${f##*/}
    if ! grep -q "^$login:" /etc/passwd; then
      uid=$((uid + 1))
      echo "$login:*:$uid:$uid::/home/$login:/bin/sh" >> /etc/passwd
      echo "$login:x:$uid:" >> /etc/group
    fi
    mkdir -p "/home/$login/.ssh"
    cp "$f" "/home/$login/.ssh/authorized_keys"
    chmod 700 "/home/$login" "/home/$login/.ssh"
    chmod 600 "/home/$login/.ssh/authorized_keys"
    chown -R "$login:$login" "/home/$login"
  done
  for h in /home/*; do
    [ -d "$h/.ssh" ] || continue
    [ -e "/run/geni/new/${h##*/}" ] || : > "$h/.ssh/authorized_keys"
  done
}
