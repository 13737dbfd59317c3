#!/usr/bin/env bash
# Install the Debian packages ctr and its tests need; skip what is already there.
set -euo pipefail
packages=(
  busybox-static   # the built-in image
  lxc lxc-dev pkg-config gcc python3-dev python3-venv  # liblxc and what the python bindings build against
  docker.io        # the Docker Engine for the docker backend
  docker-registry  # a registry on 127.0.0.1 for image tests
  iproute2 procps
  skopeo umoci     # independent OCI tools the image tests check ctr's exports against
  debootstrap zstd # a real Debian root filesystem, and zstd layers, for the real-world image tests
  chromium         # headless, to check the HTML report of ctr compare as a browser shows it
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
