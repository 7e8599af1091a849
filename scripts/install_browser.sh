#!/usr/bin/env bash
# Headless Chromium + ChromeDriver for the browser tests of `drdm web` (Debian packages; about 75 s).
# Installs only when missing and only as root; otherwise says why (the browser tests then skip with that reason).
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "install_browser: chromium/chromium-driver missing and apt-get as root unavailable; browser tests will skip" >&2
    exit 0
fi
echo "installing chromium and chromium-driver (log: /tmp/drdm-apt.log)"
if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver; } \
        > /tmp/drdm-apt.log 2>&1; then
    tail -n 20 /tmp/drdm-apt.log
    echo "install_browser: apt-get failed; browser tests will skip" >&2
fi
