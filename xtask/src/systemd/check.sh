#!/bin/bash
# What `cargo xtask systemd` runs in its guest (leakscope-check.service, systemd as PID
# 1): starts three leakers, installs leakscope with the README's commands, checks the
# unit serves metrics that find the leaks and stops cleanly, then starts the unit again
# once per variant (a drop-in), and writes every result, framed by `=== NAME` lines, to
# the second serial port; powers off. xtask/src/systemd/ fills in the @NAMES@ and judges
# the results.
set -u
out=/dev/ttyS1
stty -F $out raw -echo
say() { printf '%s\n' "$*" >> $out; }
section() { say "=== $*"; }
clock() { local up rest; read -r up rest < /proc/uptime; echo "$up"; }
# One HTTP request to the daemon, with bash's /dev/tcp (minbase has no curl).
scrape() {
  exec 3<>/dev/tcp/127.0.0.1/9929 || return 1
  printf 'GET %s HTTP/1.0\r\n\r\n' "$1" >&3
  timeout 20 cat <&3
  exec 3<&-
}
metrics=
# has NAME PID VALUE: whether $metrics holds that series of that process.
has() { grep -Eq "^$1\{([^}]*,)?pid=\"$2\"[,}].* $3\$" <<< "$metrics"; }
scans() { sed -n 's/^leakscope_scans_total \([0-9]*\).*/\1/p' <<< "$metrics"; }

section guest
say "kernel $(uname -r)"
say "check_started $(clock)"

# The leakers: user 1000's programs, mode 0700, in /home and /tmp (which the unit
# hides from leakscope), one deleted once it runs (as a package upgrade replaces a
# binary).
uid=1000
mkdir -p -m 0700 /home/leaker && chown $uid:$uid /home/leaker
programs=/root/leakscope/programs
install -o $uid -g $uid -m 0700 $programs/@GO_LEAKER@ /home/leaker/@GO_LEAKER@
install -o $uid -g $uid -m 0700 $programs/@C_LEAKER@ /tmp/@C_LEAKER@
install -o $uid -g $uid -m 0700 $programs/@C_LEAKER@_upgraded /home/leaker/@C_LEAKER@_upgraded
as_leaker() { setpriv --reuid=$uid --regid=$uid --clear-groups "$@" > /dev/null 2>&1 & }
as_leaker /home/leaker/@GO_LEAKER@ @GO_LEAK_PATTERN@
go=$!
as_leaker /tmp/@C_LEAKER@
c_tmp=$!
as_leaker /home/leaker/@C_LEAKER@_upgraded
c_gone=$!
sleep 1
rm /home/leaker/@C_LEAKER@_upgraded
section pids
say "go=$go c_tmp=$c_tmp c_gone=$c_gone"

section install
say "started $(clock)"
(cd /root/leakscope && bash -ex install.sh) >> $out 2>&1
rc=$?
section install_result
say "exit $rc"
for _ in $(seq 1 120); do
  state=$(systemctl is-active leakscope)
  if [ "$state" = active ] || [ "$state" = failed ]; then break; fi
  sleep 0.5
done
section active
say "state $state"
say "at $(clock)"

deadline=$((SECONDS + @LEAK_TIMEOUT_S@))
found=0
while [ $found = 0 ] && [ $SECONDS -lt $deadline ]; do
  sleep 2
  metrics=$(scrape /metrics 2> /dev/null)
  found=1
  for pid in $go $c_tmp $c_gone; do has leakscope_process_leak "$pid" 1 || found=0; done
done
section leaks
say "found $found"
say "at $(clock)"
section health
scrape /healthz 2>&1 | head -1 >> $out
section metrics
printf '%s\n' "$metrics" >> $out
# The dumps of the leaks, written in the unit's state directory (mode, owner, host).
dumps=/var/lib/leakscope/dumps
for _ in $(seq 1 20); do
  ls $dumps/*.json > /dev/null 2>&1 && break
  sleep 1
done
section dumps
say "host $(uname -n)"
stat -c 'file %a %U %n' $dumps/* >> $out 2>&1
grep -ho '"host": *"[^"]*"' $dumps/*.json | sort -u | sed 's/^/json /' >> $out
section usage
unit_cgroup=/sys/fs/cgroup/system.slice/leakscope.service
say "memory_peak $(cat $unit_cgroup/memory.peak 2> /dev/null)"
say "memory_current $(cat $unit_cgroup/memory.current 2> /dev/null)"
say "tasks $(cat $unit_cgroup/pids.current 2> /dev/null)"

section stop
say "from $(clock)"
systemctl stop leakscope
say "rc $?"
say "to $(clock)"
systemctl show leakscope -p Result -p ExecMainCode -p ExecMainStatus -p ActiveState >> $out

# variant NAME SETTINGS: the unit again with SETTINGS (lines, `\n` between them) in a
# drop-in, until it has scanned @VARIANT_SCANS@ times or given up (a daemon that
# exits is restarted by the unit: its first exit ends the wait).
dropin=/run/systemd/system/leakscope.service.d
variant() {
  local name=$1 n=0 until=$((SECONDS + 120)) restarts
  mkdir -p $dropin
  printf '[Service]\n%b\n' "$2" > $dropin/variant.conf
  systemctl daemon-reload
  restarts=$(systemctl show -p NRestarts --value leakscope)
  systemctl start leakscope
  metrics=
  while [ "${n:-0}" -lt @VARIANT_SCANS@ ] && [ $SECONDS -lt $until ]; do
    sleep 1
    [ "$(systemctl show -p NRestarts --value leakscope)" = "$restarts" ] || break
    [ "$(systemctl is-active leakscope)" = failed ] && break
    metrics=$(scrape /metrics 2> /dev/null)
    n=$(scans)
  done
  section "variant $name"
  say "state $(systemctl is-active leakscope)"
  say "scans ${n:-0} at $(clock)"
  journalctl -o cat --no-pager \
    _SYSTEMD_INVOCATION_ID="$(systemctl show -p InvocationID --value leakscope)" \
    | tail -n 5 | sed 's/^/log: /' >> $out
  printf '%s\n' "$metrics" >> $out
  systemctl stop leakscope
  systemctl reset-failed leakscope 2> /dev/null
}
section variants
say "from $(clock)"
if grep -qw leakscope.variants=1 /proc/cmdline; then
@VARIANTS@
fi
rm -rf $dropin
systemctl daemon-reload
section variants_end
say "at $(clock)"
section journal
journalctl -b -u leakscope -o short-monotonic --no-pager >> $out 2>&1
section end
sync
systemctl poweroff -ff
