#!/usr/bin/env bash
# Runs Parley's whole test suite on a Debian 12 machine with Go installed.
# It first installs what the tests drive for real, from Debian's packages:
# Chromium (browser tests), ffmpeg/ffprobe (test media, recordings, mixes),
# coturn (turnutils_uclient against turnd), iproute2 and util-linux (tests
# that run in a network namespace of their own) and a font for the mixer's
# name labels. No browser downloads.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v turnutils_uclient >/dev/null 2>&1 || need+=(coturn)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
if ((${#need[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "== installing ${need[*]} (Debian packages)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

echo "== go vet"
go vet ./...
echo "== go test -race"
go test -race -count=1 -timeout 25m "$@" ./...
