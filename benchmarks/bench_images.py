"""Product pictures without a model: colour accuracy, near-duplicate detection, build throughput.

    python benchmarks/bench_images.py --out benchmarks/results/images.json [--image-model DIR]

On the fashion dev set (``$AISLE_SHARED_DATA/dev/images/fashion``, 835 Myntra products with a
human ``baseColour`` label and a 256 px photo):

* **colours**: the primary colour ``aisle.embed.colours`` names, against ``baseColour`` mapped to
  Aisle's names (Navy Blue → navy, Silver → grey, Gold → yellow, Tan → brown, Peach → pink, Cream →
  beige; ``Multi`` is left out). Reported: accuracy of the primary colour, accuracy within the two
  dominant colours, per-label recall and the confusion table. Separately for even and odd ids
  (the rules were written looking at the whole dev set; there is no other labelled set here).
* **near duplicates**: each photo plus three copies made on the fly in a temporary directory: resized
  to 60 % (bicubic), recompressed as JPEG quality 35, and cropped by 5-10 % (random sides, seeded).
  A pair counts as true when both pictures come from the same photo. Precision and recall over all
  pairs, recall per transformation, and the pairs of *different* products grouped (the dev set has
  real look-alikes: the same model in the same pose in two shirts).
* **build throughput**: ``aisle build`` (bundled MiniLM, int8) of the 835 products without images,
  with images (colours and signatures), an unchanged rebuild with images (pictures re-used), and
  with ``--image-model`` if given; products per second of the build's own time (model loading
  excluded), median of ``--repeats`` interleaved runs.

Runs on a shared, loaded machine: the load average is recorded beside the timings.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aisle.embed.colours import dominant_colours
from aisle.embed.phash import HashTable, near_duplicate_pairs, picture_hashes
from aisle.index.storage import atomic_write_json
from benchmarks.machine import describe_machine

LABEL_TO_NAME = {
    "Black": "black",
    "White": "white",
    "Blue": "blue",
    "Grey": "grey",
    "Brown": "brown",
    "Red": "red",
    "Green": "green",
    "Navy Blue": "navy",
    "Pink": "pink",
    "Purple": "purple",
    "Yellow": "yellow",
    "Orange": "orange",
    "Silver": "grey",
    "Maroon": "maroon",
    "Gold": "yellow",
    "Beige": "beige",
    "Tan": "brown",
    "Peach": "pink",
    "Olive": "olive",
    "Cream": "beige",
}
TRANSFORMS = ("resize", "jpeg", "crop")


def fashion_dir() -> Path:
    root = Path(os.environ.get("AISLE_SHARED_DATA", REPO.parent / "shared" / "data"))
    path = root / "dev" / "images" / "fashion"
    if not (path / "styles.csv").is_file():
        sys.exit(f"fashion dev set not found at {path} (set AISLE_SHARED_DATA)")
    return path


def read_styles(folder: Path) -> list[dict[str, str]]:
    with (folder / "styles.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def colour_accuracy(folder: Path, styles: list[dict[str, str]]) -> dict[str, Any]:
    """Primary colour vs ``baseColour`` (see the module docstring)."""
    results: list[tuple[str, str, list[str], int]] = []
    started = time.perf_counter()
    for row in styles:
        with Image.open(folder / "images" / f"{row['id']}.jpg") as image:
            colours = dominant_colours(image)
        results.append((row["baseColour"], LABEL_TO_NAME.get(row["baseColour"], ""), colours, int(row["id"])))
    seconds = time.perf_counter() - started

    def score(subset: list[tuple[str, str, list[str], int]]) -> dict[str, Any]:
        labelled = [r for r in subset if r[1]]
        return {
            "products": len(labelled),
            "primary_accuracy": round(sum(r[1] == r[2][0] for r in labelled) / len(labelled), 4),
            "top2_accuracy": round(sum(r[1] in r[2][:2] for r in labelled) / len(labelled), 4),
        }

    labelled = [r for r in results if r[1]]
    confusion = Counter((r[0], r[2][0]) for r in labelled)
    per_label = {}
    for label in sorted({r[0] for r in labelled}, key=lambda name: -sum(r[0] == name for r in labelled)):
        rows = [r for r in labelled if r[0] == label]
        per_label[label] = {
            "count": len(rows),
            "recall": round(sum(r[1] == r[2][0] for r in rows) / len(rows), 4),
            "predicted": dict(Counter(r[2][0] for r in rows).most_common()),
        }
    return {
        "all": score(results),
        "even_ids": score([r for r in results if r[3] % 2 == 0]),
        "odd_ids": score([r for r in results if r[3] % 2 == 1]),
        "left_out": dict(Counter(r[0] for r in results if not r[1])),
        "per_label": per_label,
        "top_confusions": [
            {"label": label, "predicted": predicted, "count": count}
            for (label, predicted), count in confusion.most_common(40)
            if LABEL_TO_NAME[label] != predicted
        ][:20],
        "seconds": round(seconds, 3),
        "images_per_second": round(len(results) / seconds, 1),
    }


def transformed_copies(image: Image.Image, rng: np.random.Generator, folder: Path, stem: str) -> list[Path]:
    """Original, resized, recompressed and cropped copies written to ``folder``."""
    width, height = image.size
    share = rng.uniform(0.05, 0.10)
    dx, dy = int(width * share), int(height * share)
    left = int(dx * rng.uniform(0, 1))
    top = int(dy * rng.uniform(0, 1))
    copies = {
        "orig": image,
        "resize": image.resize((int(width * 0.6), int(height * 0.6)), Image.Resampling.BICUBIC),
        "jpeg": image,
        "crop": image.crop((left, top, width - (dx - left), height - (dy - top))),
    }
    paths = []
    for name, picture in copies.items():
        path = folder / f"{stem}-{name}.jpg"
        if name == "jpeg":
            buffer = io.BytesIO()
            picture.save(buffer, "JPEG", quality=35)
            path.write_bytes(buffer.getvalue())
        else:
            picture.save(path, "JPEG", quality=95)
        paths.append(path)
    return paths


def near_duplicates(folder: Path, styles: list[dict[str, str]]) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="aisle-dups-") as scratch:
        paths: list[Path] = []
        for row in styles:
            with Image.open(folder / "images" / f"{row['id']}.jpg") as image:
                paths.extend(transformed_copies(image.convert("RGB"), rng, Path(scratch), row["id"]))
        started = time.perf_counter()
        hashes = []
        for path in paths:
            with Image.open(path) as image:
                hashes.append(picture_hashes(image))
        seconds = time.perf_counter() - started
    table = HashTable.of(hashes)
    origin = np.repeat(np.arange(len(styles)), 4)
    pairs = near_duplicate_pairs(table)
    same = origin[pairs[:, 0]] == origin[pairs[:, 1]]
    found = {tuple(pair) for pair in pairs.tolist()}
    true_pairs = len(styles) * 6  # 4 pictures per photo: 6 pairs
    rows = np.arange(len(origin)).reshape(-1, 4)
    recall = {
        name: round(float(np.mean([(int(r[0]), int(r[k + 1])) in found for r in rows])), 4)
        for k, name in enumerate(TRANSFORMS)
    }
    ids = [row["id"] for row in styles]
    cross = sorted({tuple(sorted((ids[origin[a]], ids[origin[b]]))) for a, b in pairs[~same].tolist()})
    return {
        "pictures": len(origin),
        "pairs_found": len(pairs),
        "precision": round(float(same.mean()) if len(pairs) else 1.0, 4),
        "recall": round(float(same.sum()) / true_pairs, 4),
        "recall_original_to_copy": recall,
        "different_products_grouped": {
            "pairs_of_products": len(cross),
            "examples": [list(pair) for pair in cross[:15]],
        },
        "of_all_product_pairs": round(len(cross) / (len(styles) * (len(styles) - 1) / 2), 6),
        "hash_seconds": round(seconds, 3),
        "pictures_per_second": round(len(origin) / seconds, 1),
    }


def build_throughput(folder: Path, styles: list[dict[str, str]], image_model: str | None, repeats: int) -> dict:
    """Builds of the fashion catalogue through the real command line, with and without pictures."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="aisle-build-") as scratch:
        catalogues = {}
        for with_images in (False, True):
            catalogue = catalogues[with_images] = Path(scratch) / f"fashion-{with_images}.csv"
            with catalogue.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(["id", "title", "category"] + (["image"] if with_images else []))
                for row in styles:
                    category = f"{row['masterCategory']} > {row['subCategory']} > {row['articleType']}"
                    image = [str(folder / "images" / f"{row['id']}.jpg")] if with_images else []
                    writer.writerow([row["id"], row["productDisplayName"], category, *image])
        variants: dict[str, tuple[Path, list[str]]] = {
            "text_only": (catalogues[False], []),
            "pictures": (catalogues[True], []),
            "pictures_unchanged_rebuild": (catalogues[True], []),
        }
        if image_model:
            variants["pictures_and_image_model"] = (catalogues[True], ["--image-model", image_model])
        timings: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}

        def build(catalogue: Path, out: Path, extra: list[str]) -> dict[str, Any]:
            command = [sys.executable, "-m", "aisle.cli", "build", "--catalog", str(catalogue), "--out", str(out)]
            done = subprocess.run(
                [*command, "--no-progress", "--json", *extra], capture_output=True, text=True, check=True, cwd=REPO
            )
            return json.loads(done.stdout.strip().splitlines()[-1])

        # Interleaved (one run of each variant per round), so that the machine's load, which
        # changes by the minute on a shared host, weighs on every variant alike.
        for repeat in range(repeats):
            for name, (catalogue, extra) in variants.items():
                out = Path(scratch) / f"index-{name}-{repeat}"
                if name == "pictures_unchanged_rebuild":
                    build(catalogue, out, extra)  # the first build, not timed
                timings[name].append(build(catalogue, out, extra))
        for name, runs in timings.items():
            build_seconds = statistics.median(t["build_seconds"] for t in runs)
            results[name] = {
                "products": len(styles),
                "build_seconds_median": round(build_seconds, 3),
                "products_per_second": round(len(styles) / build_seconds, 1),
                "pictures_seconds_median": round(statistics.median(t["timings"].get("pictures", 0.0) for t in runs), 3),
                "pictures": runs[-1].get("pictures"),
                "pictures_reused": runs[-1].get("pictures_reused"),
                "image_model": runs[-1].get("image_model"),
                "runs": len(runs),
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "images.json")
    parser.add_argument("--image-model", help="a local CLIP-style model directory for the third build")
    parser.add_argument("--image-model-note", default="", help="what the image model is (recorded as is)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-build", action="store_true")
    args = parser.parse_args()
    folder = fashion_dir()
    styles = read_styles(folder)
    load_before = os.getloadavg()
    report: dict[str, Any] = {
        "dataset": f"fashion dev set ({len(styles)} products, {folder})",
        "colours": colour_accuracy(folder, styles),
        "near_duplicates": near_duplicates(folder, styles),
    }
    if not args.skip_build:
        report["build"] = build_throughput(folder, styles, args.image_model, args.repeats)
        report["build"]["image_model_note"] = args.image_model_note
    report["load_average"] = {
        "before": [round(x, 2) for x in load_before],
        "after": [round(x, 2) for x in os.getloadavg()],
    }
    report["machine"] = describe_machine(REPO)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, report)
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=1)[:4000])


if __name__ == "__main__":
    main()
