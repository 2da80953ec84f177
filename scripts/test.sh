#!/usr/bin/env bash
# Runs Parley's whole test suite on a Debian 12 machine with Go installed.
# It first installs what the tests drive for real, from Debian's packages:
# Chromium (browser tests), ffmpeg/ffprobe (test media, recordings, mixes),
# coturn (turnutils_uclient against turnd), iproute2 and util-linux (tests
# that run in a network namespace of their own), a font for the mixer's
# name labels, and npm. No browser downloads. From the npm registry it
# installs the third-party WHIP and WHEP clients the browser tests use
# (e2e/whip) and axe-core (the page's accessibility check).
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
# axe-core (npm, pinned) for the browser tests' accessibility check of the
# conference page (e2e/page_test.go reads e2e/.npm/node_modules/axe-core/axe.min.js).
axe_version=4.14.1
if ! grep -qs "\"version\": \"$axe_version\"" e2e/.npm/node_modules/axe-core/package.json; then
  echo "== npm install axe-core@$axe_version"
  npm install --prefix e2e/.npm --no-save --no-audit --no-fund "axe-core@$axe_version" >/dev/null
fi

echo "== go vet"
go vet ./...
echo "== go test -race"
# One package's tests at a time (-p 1): the browser tests encode several
# simulcast cameras and the shaped-link tests measure how the server adapts to
# a link's capacity; run side by side on a 2-core machine they take each
# other's CPU, and a starved receiver looks like a congested link. The test
# binaries are built first, in parallel, running nothing.
go test -race -count=1 -run '^$' ./... >/dev/null || true
go test -race -count=1 -p 1 -timeout 25m "$@" ./...

# Each fuzz target for a short while (PARLEY_FUZZTIME, default 5000 executions;
# 0 skips). A count, not a duration: with a duration Go's fuzzing coordinator
# can fail a target with a bare "context deadline exceeded" and no failing
# input when the deadline meets a worker in the middle of an input (a race
# in internal/fuzz, seen here with FuzzSession, whose inputs each run a whole
# WebSocket session).
# Their seed corpora (testdata/fuzz) ran above as plain tests; this looks a
# little further. docs/testing.md has the longer runs.
fuzztime="${PARLEY_FUZZTIME:-5000x}"
if [ "$fuzztime" != "0" ]; then
  echo "== go test -fuzz ($fuzztime per target)"
  # The recorder's targets write files: a RAM disk makes their fsyncs cheap.
  fuzztmp=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
  trap 'rm -rf "$fuzztmp"' EXIT
  for target in \
    ./pkg/signaling:FuzzSession \
    ./pkg/sfu:FuzzPublishOffer ./pkg/sfu:FuzzSubscribeAnswer ./pkg/sfu:FuzzRTCPFeedback \
    ./pkg/codec:FuzzIsKeyframe ./pkg/codec:FuzzParseVP8 ./pkg/codec:FuzzParseVP9SS ./pkg/codec:FuzzAppendAnnexBNALs ./pkg/codec:FuzzOpusPacketDuration \
    ./pkg/codec/av1dd:FuzzParse \
    ./pkg/recorder:FuzzDepacketize ./pkg/recorder:FuzzRecordRTP ./pkg/recorder:FuzzRepairFile ./pkg/recorder:FuzzVP9Hide; do
    if ! TMPDIR="$fuzztmp" go test -run '^$' -fuzz "^${target#*:}\$" -fuzztime "$fuzztime" "${target%%:*}" >"$fuzztmp/out" 2>&1; then
      tail -40 "$fuzztmp/out"
      echo "FAIL ${target}: the failing input is kept in ${target%%:*}/testdata/fuzz/${target#*:}/"
      exit 1
    fi
    echo "ok   ${target} ($(grep -o 'execs: [0-9]*' "$fuzztmp/out" | tail -1))"
  done
fi
