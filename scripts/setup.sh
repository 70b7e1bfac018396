#!/usr/bin/env bash
# Installs every Debian package that kernex's build, tests and demo need.
# Idempotent: nothing is installed when everything is present, and
# `apt-get update` runs only when something is missing. Debian packages only.
set -euo pipefail

packages=(
  # build
  g++ meson ninja-build pkg-config cmake
  libzmq3-dev cppzmq-dev nlohmann-json3-dev libssl-dev doctest-dev
  xeus-dev libboost-dev libcli11-dev
  # the Python package: the binding, its tests, `pip install .` offline
  python3-dev pybind11-dev python3-pybind11 pybind11-json-dev python3-pytest
  python3-mesonpy python3-pip
  # fuzzing and sanitizers (clang's libFuzzer and runtimes)
  clang libclang-rt-14-dev
  # real kernels and reference clients for the tests, benchmarks and demo
  python3-ipykernel python3-jupyter-client python3-jupyter-server
  python3-jupyter-kernel-test python3-numpy python3-matplotlib
  # a kernel nobody here wrote that answers heartbeats only between requests
  r-cran-irkernel
  # more kernels and clients nobody here wrote (issue 18, docs/kernels.md):
  # xeus-python, Debian's octave spec (argv[0] `python`), jupyter console, nbconvert
  xpython python3-octave-kernel python3-jupyter-console python3-nbconvert
  # notebook suite: the reference executor and validator
  python3-nbclient python3-nbformat
  # a JupyterHub for the gateway suite (its proxy runs on node)
  jupyterhub node-configurable-http-proxy
  # docker suite: a real dockerd and local images without a registry
  docker.io busybox-static debootstrap bubblewrap
  # docker suite: the TLS test makes its CA and certificates with the openssl CLI
  openssl
  # process inspection in tests
  procps
)
# mcp suite: node and npm (they install the MCP SDK client into the build
# dir). A node already on the machine (e.g. NodeSource's, which bundles npm)
# is used as it is; Debian's otherwise.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "setup: missing packages: ${missing[*]}" >&2
  echo "setup: run as root (or install them with apt-get) and try again" >&2
  exit 1
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
