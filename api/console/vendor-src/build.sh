#!/bin/sh
# Rebuilds the vendored Uppy bundle the console serves (api/console/static/vendor/).
# Development only: run after changing the pinned versions in package.json, then commit
# the output. A fresh machine never needs Node: the output is in the repository.
#   cd api/console/vendor-src && npm ci && sh build.sh
set -eu
cd "$(dirname "$0")"
out=../static/vendor
mkdir -p "$out"
npx esbuild entry.js --bundle --minify --format=iife --target=es2020 \
    --legal-comments=eof --outfile="$out/uppy.js"
cat node_modules/@uppy/core/dist/style.min.css \
    node_modules/@uppy/dashboard/dist/style.min.css > "$out/uppy.css"
# Versions and licences of what went in, next to the bundle.
node -e '
const p = require("./package-lock.json").packages;
const names = Object.keys(p).filter(k => k.startsWith("node_modules/") && !p[k].dev);
console.log(names.map(k => `${k.slice(13)} ${p[k].version} ${p[k].license || ""}`).join("\n"));
' > "$out/VERSIONS.txt"
