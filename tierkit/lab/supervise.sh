#!/bin/sh
# Run one lab host: join its cgroups, then boot it with systemd-nspawn; boot it again each time
# the guest reboots (nspawn exits 133), and stop for any other exit, recording the code.
# usage: supervise.sh EXIT_FILE CGROUP_DIR... -- SYSTEMD_NSPAWN_ARGS...
set -u
exit_file=$1
shift
while [ "$1" != "--" ]; do
  echo $$ > "$1/cgroup.procs" || exit 1
  shift
done
shift
while :; do
  # no image locks: a killed host would leave them behind in /run/systemd/nspawn/locks
  SYSTEMD_NSPAWN_LOCK=0 systemd-nspawn "$@"
  rc=$?
  [ "$rc" -eq 133 ] || break
  echo "tierkit lab: the guest rebooted; booting it again"
done
echo "$rc" > "$exit_file"
exit "$rc"
