#!/usr/bin/env bash
# Builds the wheel, installs it into a fresh environment outside the repository and imports every
# module of it: a subpackage missing from the wheel fails here even when the editable install and
# the tests pass. Dependencies come from the dev environment's site-packages (read-only), so that
# the check needs no download; the wheel itself is installed with --no-deps.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${1:-"$repo/.venv/bin/python"}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m pip wheel -q --no-deps --no-build-isolation -w "$work/dist" "$repo" >/dev/null
wheels=("$work"/dist/*.whl)
[ "${#wheels[@]}" -eq 1 ] || { echo "wheel check: expected one wheel, got ${wheels[*]}"; exit 1; }
case "$(basename "${wheels[0]}")" in aisle_search-*) ;; *) echo "wheel check: unexpected name ${wheels[0]}"; exit 1;; esac
"$python" -m venv "$work/env"
site=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
env_site=$("$work/env/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# The dev site-packages without its editable finder for aisle: only the wheel may provide `aisle`.
mkdir -p "$work/deps"
for entry in "$site"/*; do
  case "$(basename "$entry")" in
    __editable__*|aisle_search*|_aisle_search*|*.pth) ;;
    *) ln -s "$entry" "$work/deps/" ;;
  esac
done
echo "$work/deps" > "$env_site/dev-deps.pth"
"$work/env/bin/python" -m pip install -q --no-deps "${wheels[0]}"
cd "$work"
"$work/env/bin/python" - "$repo" <<'PY'
import importlib
import pkgutil
import sys
import zipfile
from pathlib import Path

wheel = next(Path("dist").glob("*.whl"))
names = set(zipfile.ZipFile(wheel).namelist())
tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
assert tops == {"aisle"}, f"the wheel's top-level entries are {sorted(tops)}, not just aisle"
for bare in ("embed", "index", "service", "training", "core"):
    try:
        importlib.import_module(bare)
    except ModuleNotFoundError:
        continue
    raise SystemExit(f"`import {bare}` works from the wheel's environment")
import aisle

# Modules that need the optional export stack (torch) are imported only when it is installed.
optional = ("torch", "transformers", "sentence_transformers", "onnx", "onnxscript")
count = 0
for module in pkgutil.walk_packages(aisle.__path__, "aisle."):
    if module.name.endswith(".__main__"):
        continue
    try:
        importlib.import_module(module.name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in optional:
            continue
        raise
    count += 1
# The playground and the offline API docs need their page, scripts and vendored assets.
static = Path(sys.argv[1]) / "service" / "playground" / "static"
expected = {f"aisle/service/playground/static/{path.relative_to(static).as_posix()}" for path in static.rglob("*") if path.is_file()}
missing = sorted(expected - names)
assert expected and not missing, f"the wheel lacks playground files: {missing[:5]}"
print(f"wheel check: {wheel.name} has one top-level package, aisle {aisle.__version__}; {count} modules import; {len(expected)} playground files")
PY
"$work/env/bin/aisle" --help >/dev/null
"$work/env/bin/aisle" --version
# Type checking of the whole package, on the installed wheel (mypy cannot follow the editable
# mapping).
site_aisle=$("$work/env/bin/python" -c 'import aisle, pathlib; print(pathlib.Path(aisle.__file__).parent)')
touch "$site_aisle/py.typed"
"$work/env/bin/python" -m mypy --config-file "$repo/pyproject.toml" \
  -p aisle
