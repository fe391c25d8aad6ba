#!/usr/bin/env bash
# llama.cpp as a peer: build llama-cpp-python 0.3.36 from its sdist once (several minutes on 2 cores),
# keep the wheel in ~/.cache/lucidlm/wheels, and install it into the virtual environment given
# (default .venv). Later runs install the cached wheel in seconds. Used by `make llama-cpp`
# (which `make test` runs, so the GGUF export is tested against llama.cpp itself in CI) and by the
# benchmarks that measure llama.cpp beside lucidlm.
#   scripts/build_llama_cpp.sh [PYTHON]
# The sdist is pinned by sha256 (the same file the `gpt2` asset takes its test vectors from).
# The build is for this machine's CPU (GGML_NATIVE); LLAMA_CPP_CMAKE_ARGS adds CMake options.
# If the download or the build fails (offline, no compiler), this says so and exits 0: the tests
# that need llama.cpp skip with that reason rather than failing the suite.
set -uo pipefail
PY=${1:-.venv/bin/python}
VERSION=0.3.36
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
CACHE=${LUCIDLM_CACHE_DIR:-$HOME/.cache/lucidlm}/wheels
mkdir -p "$CACHE"
if "$PY" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$VERSION')" 2>/dev/null; then
    echo "llama-cpp-python $VERSION is installed"; exit 0
fi
wheel=$(ls "$CACHE"/llama_cpp_python-$VERSION-*.whl 2>/dev/null | head -n 1)
if [ -z "$wheel" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    echo "llama-cpp-python==$VERSION --hash=sha256:$SHA256" > "$tmp/pinned.txt"
    echo "building llama-cpp-python $VERSION from its sdist (once; a few minutes) into $CACHE"
    if ! "$PY" -m pip download --quiet --no-deps --no-binary llama-cpp-python -d "$tmp" -r "$tmp/pinned.txt"; then
        echo "note: could not download the llama-cpp-python sdist (offline?): the llama.cpp tests will be skipped"
        exit 0
    fi
    if ! CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF ${LLAMA_CPP_CMAKE_ARGS:-}" \
         CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$PY" -m pip wheel --quiet --no-deps "$tmp/llama_cpp_python-$VERSION.tar.gz" -w "$tmp/out"; then
        echo "note: llama-cpp-python did not build (no C++ compiler or CMake?): the llama.cpp tests will be skipped"
        exit 0
    fi
    mv "$tmp"/out/llama_cpp_python-$VERSION-*.whl "$CACHE"/
    wheel=$(ls "$CACHE"/llama_cpp_python-$VERSION-*.whl | head -n 1)
fi
"$PY" -m pip install --quiet "$wheel" && echo "installed $(basename "$wheel")"
# its OpenAI server's packages (benchmarks/serve_load.py compares with it); optional
"$PY" -m pip install --quiet "$wheel[server]" || echo "llama-cpp-python[server] not installed: serve_load.py will skip llama.cpp's server"
