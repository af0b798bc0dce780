#!/usr/bin/env bash
# Installs the pinned npm packages @grafana/schema and typescript into tests/dashboards_support/
# (from its package-lock.json) for the dashboards' schema check in tests/test_dashboards.py.
# Idempotent: does nothing when the pinned versions are already installed. As root it first installs
# Debian's nodejs and npm when they are missing (install-helm.sh needs npm too).
set -euo pipefail
cd "$(dirname "$0")/../tests/dashboards_support"

if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "install-grafana-schema: node and npm are required (Debian: apt-get install nodejs npm)" >&2
        exit 1
    fi
    echo "install-grafana-schema: installing Debian's nodejs and npm (system-wide)"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm
fi

installed_ok() {
    node -e '
        const fs = require("fs");
        const wanted = require("./package.json").devDependencies;
        for (const [name, version] of Object.entries(wanted)) {
            const file = `node_modules/${name}/package.json`;
            if (!fs.existsSync(file) || JSON.parse(fs.readFileSync(file, "utf8")).version !== version) {
                process.exit(1);
            }
        }
    ' && [ -x node_modules/.bin/tsc ]
}

if installed_ok; then
    echo "install-grafana-schema: already installed ($(node_modules/.bin/tsc --version))"
    exit 0
fi

npm ci --no-audit --no-fund --loglevel=error
installed_ok
echo "install-grafana-schema: installed @grafana/schema $(node -p 'require("./node_modules/@grafana/schema/package.json").version'), $(node_modules/.bin/tsc --version)"
