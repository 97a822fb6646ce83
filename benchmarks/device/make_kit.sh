#!/usr/bin/env bash
# Builds .whl/: the Python wheels the device machine lacks (its image has torch, triton and transformers; no
# package index there), for Python 3.12 on x86-64, plus .whl/setup.sh, which a device command sources first:
#   bash benchmarks/device/make_kit.sh          # here, once per fresh checkout (.whl/ is git-ignored)
#   source .whl/setup.sh && python3 -m benchmarks.lm_train_step ...    # there (carry .whl)
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo '/.whl/' >>.git/info/exclude; }
mkdir -p .whl
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
# the anchor (fla), the fused kernels (liger), what statetrack imports beyond the image, and the test tools (not
# pytest itself: the image has one, and a carried pytest breaks its pytest-timeout plugin at start-up)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" -d .whl \
  flash-linear-attention==0.6.0 fla-core==0.6.0 einops liger-kernel==0.8.5 omegaconf==2.3.0 \
  pytest-xdist==3.6.1 execnet hypothesis==6.122.3 sortedcontainers \
  tensorboard==2.21.0 tensorboard-data-server absl-py markdown werkzeug
# the transformers that pyproject pins (the image's is older: 5.x renamed the outputs' past_key_values to cache)
# and what it needs beyond the image; numpy, filelock, packaging and the like stay the image's (torch uses them)
tf=$(grep -o '"transformers==[^"]*"' pyproject.toml | tr -d '"')
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" -d .whl \
  "$tf" huggingface-hub==2.5.0 tokenizers==0.23.3 safetensors==0.8.0 kernels==0.19.1 regex hf-xet httpx2 httpcore2 \
  h11 anyio click typer shellingham rich markdown-it-py mdurl pygments annotated-doc pydantic pydantic-core \
  annotated-types typing-inspection tomlkit truststore
# omegaconf's parser runtime is only an sdist on PyPI: build its (pure Python) wheel here
ls .whl/antlr4_python3_runtime-4.9.3-*.whl >/dev/null 2>&1 || python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
cat > .whl/setup.sh <<'SETUP'
# sourced on the device: the carried wheels into /tmp/site (on PYTHONPATH), then the versions in one line
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || return 1
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
python3 -c "import torch, triton, transformers, fla; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__, 'fla', fla.__version__, torch.cuda.get_device_name())"
SETUP
du -sh .whl
