"""Should attributes go into the embedded text? Dense retrieval on the fashion catalogue, both ways.

    python -m benchmarks.eval_attribute_text [--out benchmarks/results/attribute_text.json]

The fashion catalogue (``../shared/data/dev/images/fashion/styles.csv``, 835 real Myntra
products) is encoded twice with the real encoder (bundled MiniLM, ONNX int8): as Aisle embeds it
today (title, brand, category path), and with the attributes appended (gender, colour, article
type, usage, season). Two query sets, neither made to favour one side by hand:

* **attribute queries**: every (gender, colour, article type) combination present in the
  catalogue, as text ("Men Black Casual Shoes"); the relevant products are those having all three
  values (a storefront shopper typing what the facets would filter). It favours the attribute
  text by construction, so it says how much that text can add;
* **known item**: each product's own name as the query, with the word naming its gender removed
  (as shoppers seldom type it); the relevant product is that one. It says what the added text
  costs when the words are not in the query.

MRR@10 and hit@10 of exact cosine ranking over the whole catalogue, each way.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
from pathlib import Path

import numpy as np

from aisle.index.catalog import CATEGORY_SEPARATOR
from benchmarks.data import REPO_ROOT, shared_data_dir

ATTRIBUTES = ("gender", "baseColour", "articleType", "usage", "season")


def _mrr_hits(scores: np.ndarray, relevant: list[set[int]]) -> dict[str, float]:
    reciprocal, hits = [], []
    for row, wanted in enumerate(relevant):
        top = np.argsort(-scores[row], kind="stable")[:10].tolist()
        rank = next((position for position, item in enumerate(top, start=1) if item in wanted), None)
        reciprocal.append(1 / rank if rank else 0.0)
        hits.append(1.0 if rank else 0.0)
    return {"mrr@10": round(float(np.mean(reciprocal)), 4), "hit@10": round(float(np.mean(hits)), 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.eval_attribute_text")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "attribute_text.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("AISLE_CACHE_DIR", str(REPO_ROOT / ".cache" / "aisle"))
    from aisle.embed import create_encoder, prepare_model
    from aisle.embed.config import EncoderConfig

    config = EncoderConfig()
    prepare_model(config)
    encoder = create_encoder(config)
    path = shared_data_dir() / "dev" / "images" / "fashion" / "styles.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["productDisplayName"].strip()]
    names = [row["productDisplayName"].strip() for row in rows]
    plain = [
        ". ".join(
            part
            for part in (
                name,
                name.split(" ")[0],
                CATEGORY_SEPARATOR.join(row[c] for c in ("masterCategory", "subCategory", "articleType") if row[c]),
            )
            if part
        )
        for name, row in zip(names, rows)
    ]
    with_attributes = [text + ". " + ", ".join(row[a] for a in ATTRIBUTES if row[a]) for text, row in zip(plain, rows)]
    combos: dict[tuple[str, str, str], set[int]] = {}
    for index, row in enumerate(rows):
        combos.setdefault((row["gender"], row["baseColour"], row["articleType"]), set()).add(index)
    attribute_queries = [" ".join(combo) for combo in combos]
    gender_words = re.compile(r"\b(men|women|mens|womens|men's|women's|boys|girls|unisex)\b", re.IGNORECASE)
    known_queries = [" ".join(gender_words.sub(" ", name).split()) for name in names]

    result: dict = {
        "command": "python -m benchmarks.eval_attribute_text",
        "catalogue": str(path),
        "products": len(rows),
        "encoder": encoder.name,
        "attributes_appended": list(ATTRIBUTES),
        "query_sets": {"attribute": len(attribute_queries), "known_item": len(known_queries)},
        "loadavg": os.getloadavg(),
    }
    queries = {
        "attribute": (encoder.encode_queries(attribute_queries), list(combos.values())),
        "known_item": (encoder.encode_queries(known_queries), [{i} for i in range(len(rows))]),
    }
    for label, texts in (("embedded_text_today", plain), ("with_attributes", with_attributes)):
        documents = encoder.encode_documents(texts, batch_size=64)
        result[label] = {
            name: _mrr_hits(vectors @ documents.T, relevant) for name, (vectors, relevant) in queries.items()
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
