#!/usr/bin/env bash
# The whole test run on a fresh machine: installs what the tests need, then runs them.
#   - Debian packages pip cannot install (tshark for the cross-checks, chromium for the HTML
#     report test), non-interactively;
#   - a virtualenv in .venv with wireprobe and its dev extra;
#   - ruff and mypy --strict on analyzer/, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v tshark >/dev/null 2>&1 || need_apt+=(tshark)      # the second opinion (pyshark)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)  # opens the HTML reports
command -v mosquitto >/dev/null 2>&1 || need_apt+=(mosquitto)  # the live MQTT broker
if ((${#need_apt[@]})); then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    echo "wireprobe tests: installing ${need_apt[*]} from Debian's packages" >&2
    $SUDO apt-get update -q >/dev/null
    $SUDO apt-get install -y -q "${need_apt[@]}" >/dev/null
fi

# The live tests talk to a real RabbitMQ on 127.0.0.1:5672: start it when it is installed but
# stopped (machines of this kind ship it; `rabbitmq-server -detached` is Debian's way).
amqp_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
if ! amqp_up && command -v rabbitmq-server >/dev/null 2>&1; then
    echo "wireprobe tests: starting RabbitMQ" >&2
    rabbitmq-server -detached >/dev/null 2>&1 || true
    for _ in $(seq 60); do amqp_up && break; sleep 1; done
fi

# The live MQTT tests talk to a real Mosquitto on 127.0.0.1:1883; without a configuration file
# Mosquitto 2 listens on loopback only and lets anonymous clients in, which is what they need.
mqtt_up() { (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; }
if ! mqtt_up && command -v mosquitto >/dev/null 2>&1; then
    echo "wireprobe tests: starting Mosquitto" >&2
    mosquitto -d >/dev/null 2>&1 || true
    for _ in $(seq 20); do mqtt_up && break; sleep 0.5; done
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'

.venv/bin/ruff check analyzer
.venv/bin/mypy --strict analyzer
exec .venv/bin/python -m pytest "$@"
