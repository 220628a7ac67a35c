#!/usr/bin/env bash
# Refresh the vendored API docs UIs in performance_agent/static/openapi/.
#
# The service must render /schema/swagger and /schema/redoc on air-gapped clusters, so the
# dist files are committed to the repository and served by the app itself. npm is needed
# only here, to upgrade them; a fresh clone with python3 alone serves what is committed.
#
# Usage: scripts/update-docs-assets.sh [SWAGGER_UI_VERSION] [REDOC_VERSION]
#   defaults: the newest swagger-ui-dist 5.x and redoc 2.x on the npm registry.
set -euo pipefail

swagger_spec="swagger-ui-dist@${1:-5}"
redoc_spec="redoc@${2:-2}"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${repo_root}/performance_agent/static/openapi"

command -v npm >/dev/null || { echo "npm is required to update the docs assets" >&2; exit 1; }

workdir="$(mktemp -d)"
trap 'rm -rf "${workdir}"' EXIT

# npm pack downloads the published tarball only: no install scripts run, no node_modules.
pack() {
    (cd "${workdir}" && npm pack --silent "$1" | tail -n 1)
}

swagger_tgz="$(pack "${swagger_spec}")"
redoc_tgz="$(pack "${redoc_spec}")"
mkdir -p "${workdir}/swagger" "${workdir}/redoc"
tar -xzf "${workdir}/${swagger_tgz}" -C "${workdir}/swagger"
tar -xzf "${workdir}/${redoc_tgz}" -C "${workdir}/redoc"

swagger_version="$(node -p "require('${workdir}/swagger/package/package.json').version")"
redoc_version="$(node -p "require('${workdir}/redoc/package/package.json').version")"
case "${swagger_version}" in 5.*) ;; *) echo "expected swagger-ui-dist 5.x, got ${swagger_version}" >&2; exit 1 ;; esac
case "${redoc_version}" in 2.*) ;; *) echo "expected redoc 2.x, got ${redoc_version}" >&2; exit 1 ;; esac

mkdir -p "${target}"
rm -f "${target}"/swagger-ui* "${target}"/redoc* "${target}"/LICENSE* "${target}"/NOTICE* "${target}"/VERSIONS.txt

for file in swagger-ui-bundle.js swagger-ui.css swagger-ui-standalone-preset.js; do
    cp "${workdir}/swagger/package/${file}" "${target}/${file}"
done
cp "${workdir}/swagger/package/LICENSE" "${target}/LICENSE.swagger-ui"
if [[ -f "${workdir}/swagger/package/NOTICE" ]]; then
    cp "${workdir}/swagger/package/NOTICE" "${target}/NOTICE.swagger-ui"
fi

cp "${workdir}/redoc/package/bundles/redoc.standalone.js" "${target}/redoc.standalone.js"
cp "${workdir}/redoc/package/LICENSE" "${target}/LICENSE.redoc"

# Source maps point at files we do not ship; browsers would request them when devtools open.
sed -i -e '/^\/\/# sourceMappingURL=[^ ]*$/d' -e '/^\/\*# sourceMappingURL=[^ ]*\*\/$/d' "${target}"/*.js "${target}"/*.css

# ReDoc 2.x renders its sidebar footer logo from cdn.redoc.ly on every page load. Offline that
# request hangs until the network gives up, so point it at an inline blank image instead.
redoc_logo_url="https://cdn.redoc.ly/redoc/logo-mini.svg"
blank_svg="data:image/svg+xml,%3Csvg xmlns=%27http://www.w3.org/2000/svg%27 width=%271%27 height=%271%27/%3E"
grep -qF "src:\"${redoc_logo_url}\"" "${target}/redoc.standalone.js" \
    || { echo "redoc bundle no longer loads ${redoc_logo_url}; re-check it for outside requests" >&2; exit 1; }
sed -i -e "s|src:\"${redoc_logo_url}\"|src:\"${blank_svg}\"|" "${target}/redoc.standalone.js"
if grep -qE 'cdn\.redoc\.ly|fonts\.googleapis\.com|fonts\.gstatic\.com' "${target}/redoc.standalone.js"; then
    echo "redoc bundle still references a CDN; the docs would not render offline" >&2
    exit 1
fi

{
    echo "# Vendored API docs UIs, served from /schema/assets/. Regenerate with scripts/update-docs-assets.sh."
    echo "swagger-ui-dist ${swagger_version} (Apache-2.0) https://www.npmjs.com/package/swagger-ui-dist"
    echo "redoc ${redoc_version} (MIT) https://www.npmjs.com/package/redoc"
    echo "local changes: source-map comments removed; redoc sidebar logo (cdn.redoc.ly) replaced by an inline blank SVG"
} > "${target}/VERSIONS.txt"

echo "vendored swagger-ui-dist ${swagger_version} and redoc ${redoc_version} into ${target}"
du -ch "${target}"/* | tail -n 1
