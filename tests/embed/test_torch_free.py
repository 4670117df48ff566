"""The ONNX encoders serve from a cache with torch, transformers and sentence-transformers unimportable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aisle.embed import EncoderConfig, ImageEncoderConfig, create_encoder, create_image_encoder, prepare_image_model
from tests.embed.conftest import REPO_ROOT

# Installed as sitecustomize.py: every interpreter started with it on sys.path behaves as if the
# export stack were not installed.
_BLOCKER = """
import importlib.abc
import sys

BLOCKED = {"torch", "torchvision", "transformers", "sentence_transformers"}


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"No module named {name!r} (blocked by the torch-free test)")
        return None


sys.meta_path.insert(0, _Blocker())
"""


_SERVE_TEXT = """
import json, sys
from pathlib import Path
from aisle.embed import EncoderConfig, create_encoder
encoder = create_encoder(EncoderConfig(backend="onnx-int8", cache_dir=Path(sys.argv[1])))
vectors = encoder.encode_queries(["wireless mouse"]).tolist() + encoder.encode_documents(["usb cable", "desk"]).tolist()
heavy = [name for name in ("torch", "transformers", "sentence_transformers") if name in sys.modules]
print(json.dumps({"vectors": vectors, "heavy": heavy, "fingerprint": encoder.fingerprint}))
"""

_SERVE_IMAGES = """
import json, sys
from pathlib import Path
from aisle.embed import ImageEncoderConfig, create_image_encoder
config = ImageEncoderConfig(model=sys.argv[1], backend="onnx-fp32", cache_dir=Path(sys.argv[2]))
encoder = create_image_encoder(config)
vectors, ok = encoder.encode_images([sys.argv[3]])
text = encoder.encode_queries(["red shirt"]).tolist()
heavy = [name for name in ("torch", "transformers") if name in sys.modules]
print(json.dumps({"image": vectors.tolist(), "ok": ok.tolist(), "text": text, "heavy": heavy}))
"""


def _run_without_torch(tmp_path: Path, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "sitecustomize.py").write_text(_BLOCKER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO_ROOT)]))
    command = [sys.executable, "-c", code, *args]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def _last_json_line(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_blocker_really_blocks_torch(tmp_path: Path) -> None:
    result = _run_without_torch(tmp_path, "import torch")
    assert result.returncode != 0 and "blocked by the torch-free test" in result.stderr


def test_int8_text_encoder_serves_without_torch(bundled_exports: dict[str, EncoderConfig], tmp_path: Path) -> None:
    config = bundled_exports["onnx-int8"]
    payload = _last_json_line(_run_without_torch(tmp_path, _SERVE_TEXT, str(config.cache_dir)))
    assert payload["heavy"] == []
    encoder = create_encoder(config)
    expected = np.vstack([encoder.encode_queries(["wireless mouse"]), encoder.encode_documents(["usb cable", "desk"])])
    np.testing.assert_allclose(np.array(payload["vectors"]), expected, atol=1e-6)
    assert payload["fingerprint"] == encoder.fingerprint


def test_cache_miss_without_torch_says_how_to_fix_it(tmp_path: Path) -> None:
    code = "import sys; from pathlib import Path; from aisle.embed import EncoderConfig, create_encoder\n"
    code += "create_encoder(EncoderConfig(backend='onnx-int8', cache_dir=Path(sys.argv[1])))"
    result = _run_without_torch(tmp_path, code, str(tmp_path / "empty-cache"))
    assert result.returncode != 0
    assert "ImportError" in result.stderr and "aisle-search[export]" in result.stderr and "aisle build" in result.stderr


def test_clip_encoder_serves_without_torch(
    tiny_clip_config: ImageEncoderConfig, fashion_images: list[Path], tmp_path: Path
) -> None:
    prepare_image_model(tiny_clip_config)
    args = (str(tiny_clip_config.model), str(tiny_clip_config.cache_dir), str(fashion_images[0]))
    payload = _last_json_line(_run_without_torch(tmp_path, _SERVE_IMAGES, *args))
    assert payload["heavy"] == [] and payload["ok"] == [True]
    encoder = create_image_encoder(tiny_clip_config)
    assert encoder is not None
    np.testing.assert_allclose(payload["image"], encoder.encode_images([fashion_images[0]])[0], atol=1e-6)
    np.testing.assert_allclose(payload["text"], encoder.encode_queries(["red shirt"]), atol=1e-6)


@pytest.mark.parametrize("module", ["aisle.embed.onnx_text", "aisle.embed.image_encoder"])
def test_serving_modules_import_without_torch(module: str, tmp_path: Path) -> None:
    result = _run_without_torch(tmp_path, f"import {module}")
    assert result.returncode == 0, result.stderr


def test_aisle_serve_with_a_cold_cache_and_no_torch_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(_BLOCKER)
    env = dict(os.environ, PYTHONPATH=str(tmp_path), AISLE_CACHE_DIR=str(tmp_path / "empty-cache"))
    command = [sys.executable, "-m", "aisle", "serve", "--index", str(tmp_path / "index"), "--port", "1"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("aisle serve: error: cannot load the model")
    assert "no current onnx-int8 export" in lines[0] and "aisle build" in lines[0]
