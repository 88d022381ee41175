#!/usr/bin/env bash
# Installs the Debian packages the test suite needs when they are missing:
# mariadb-server (a real MySQL-protocol server for InterCode-SQL; the tests start
# their own private instance on loopback and stop it afterwards) and chromium (the
# widget's real-browser test drives it with Playwright; no browser is downloaded) and Java 17
# (ScienceWorld's simulator).
set -euo pipefail
need=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)  # ScienceWorld's simulator
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing: ${need[*]}"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the packaged service; the tests use their own instance, so stop it.
$SUDO service mariadb stop >/dev/null 2>&1 || true
