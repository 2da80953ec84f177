#!/usr/bin/env bash
# Runs Parley's whole test suite on a Debian 12 machine with Go installed.
# It first installs what the tests drive for real, from Debian's packages:
# Chromium (browser tests), ffmpeg/ffprobe (test media, recordings, mixes),
# coturn (turnutils_uclient against turnd), iproute2 and util-linux (tests
# that run in a network namespace of their own) and a font for the mixer's
# name labels. No browser downloads. From the npm registry it installs the
# third-party WHIP and WHEP clients the browser tests use (e2e/whip).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v turnutils_uclient >/dev/null 2>&1 || need+=(coturn)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v npm >/dev/null 2>&1 || need+=(npm)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
if ((${#need[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "== installing ${need[*]} (Debian packages)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

echo "== npm ci (e2e/whip: third-party WHIP and WHEP clients)"
npm ci --prefix e2e/whip --no-audit --no-fund --loglevel=error

echo "== go vet"
go vet ./...
echo "== go test -race"
go test -race -count=1 -timeout 25m "$@" ./...
