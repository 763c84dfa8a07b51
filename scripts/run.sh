#!/usr/bin/env bash
# The main job: installs what is missing, builds the release preset, makes a demo media folder
# (a short generated H.264/AAC video, a page that plays it, a 64 MiB file) and runs datapumpd on
# it until Ctrl-C. Open the printed URLs in a browser.
# Usage: scripts/run.sh [extra datapumpd options...]   (default --listen 127.0.0.1:8080; the status
# page and /metrics on the admin listener, --admin-listen 127.0.0.1:8081)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build run
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target datapumpd
demo=build/demo
mkdir -p "$demo"
if [ ! -f "$demo/clip.mp4" ]; then
  echo "making $demo/clip.mp4 (20 s test pattern and tone, H.264 + AAC)"
  ffmpeg -loglevel error -y -f lavfi -i testsrc=duration=20:size=640x360:rate=25 \
    -f lavfi -i sine=frequency=440:duration=20 -c:v libx264 -pix_fmt yuv420p -c:a aac \
    -movflags +faststart "$demo/clip.tmp.mp4"
  mv "$demo/clip.tmp.mp4" "$demo/clip.mp4"
fi
if [ ! -f "$demo/big.bin" ]; then
  head -c $((64 * 1024 * 1024)) /dev/urandom >"$demo/big.tmp"
  mv "$demo/big.tmp" "$demo/big.bin"
fi
listen=127.0.0.1:8080
admin=127.0.0.1:8081
args=("$@")
given=""
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --listen=*) listen=${args[$i]#--listen=}; given=1 ;;
    --listen) listen=${args[$((i + 1))]:-$listen}; given=1 ;;
    --admin-listen=*) admin=${args[$i]#--admin-listen=} ;;
    --admin-listen) admin=${args[$((i + 1))]:-$admin} ;;
  esac
done
[ -n "$given" ] || args=(--listen "$listen" "${args[@]}")
# The status page and /metrics are on the admin listener (docs/daemon.md, "Control plane").
cat >"$demo/index.html" <<HTML
<!doctype html>
<meta charset="utf-8">
<title>datapump demo</title>
<h1>datapump demo</h1>
<video src="clip.mp4" controls muted autoplay width="640"></video>
<p>The same clip paced at 200 kB/s: <a href="clip.mp4?rate=200k">clip.mp4?rate=200k</a>.
Watch it on the <a href="http://$admin/_datapump/">status page</a> (the admin listener, from this
machine), where it can be paused and sought.
HTML
echo "datapumpd: serving $demo on http://$listen/ (status page http://$admin/_datapump/, metrics http://$admin/metrics)"
exec build/release/src/daemon/datapumpd --root "$demo" "${args[@]}"
