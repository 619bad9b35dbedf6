#!/usr/bin/env bash
# Set up tierkit on a fresh Debian 12 machine, as root: the system packages the lab and the tests
# use, then .venv with the pinned Python dependencies and the `tierkit` command. Idempotent: a
# second run installs nothing. Lab images, the vLLM wheelhouse and the tiny model are built on
# first use and cached under /var/cache/tierkit (keyed on their recipes).
set -euo pipefail
cd "$(dirname "$0")/.."

# systemd-container: systemd-nspawn for lab hosts; mmdebstrap: the lab's host image;
# iproute2: the lab's network namespaces; openssh-client: ssh, ssh-keygen for lab host keys;
# gnupg: signs the stand-in NVIDIA apt repo; curl: health probes; python3-venv: venvs (ours, and
# bookworm's own in a test); haproxy, keepalived: `haproxy -c` / `keepalived -t` check the failover
# role's rendered configs in unit tests (the lab hosts have their own copies in the image);
# nftables: `nft --check` of the failover role's VRRP table in its tests.
APT_PACKAGES=(systemd-container mmdebstrap iproute2 openssh-client gnupg curl python3-venv ca-certificates
  haproxy keepalived nftables)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=.venv/.tierkit-setup
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python dependencies into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.txt
  .venv/bin/pip install -q --no-deps -e .
  echo "$want" >"$stamp"
fi
echo "setup: ready: $(.venv/bin/tierkit --version 2>/dev/null || echo .venv/bin/tierkit)"
