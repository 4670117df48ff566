"""Builders for tiny random models, so tests never need a download (torch required)."""

from __future__ import annotations

import json
from pathlib import Path

#: Words the tiny tokenizers know whole; anything else falls back to characters.
WORDS = (
    "the a an of for with and in red blue green black white navy grey pink brown "
    "shirt shirts shoe shoes dress watch bag jeans top tshirt kurta saree sandals heels "
    "men women boys girls casual formal sports cotton leather steel usb cable wireless mouse "
    "keyboard laptop phone case charger coffee maker software adobe microsoft windows"
).split()


def build_tiny_sentence_transformer(
    directory: Path, *, seed: int = 0, hidden: int = 32, pooling: str = "mean", normalize: bool = True
) -> Path:
    """Saves a random 2-layer BERT + WordPiece tokenizer as a sentence-transformers directory.

    Modules: Transformer → Pooling (``pooling``) → Normalize (if ``normalize``); the defaults
    mirror all-MiniLM-L6-v2.
    """
    import torch
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:  # older releases
        from sentence_transformers.models import Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory = Path(directory)
    hf_dir = directory.with_name(directory.name + "-hf")
    hf_dir.mkdir(parents=True, exist_ok=True)
    characters = list("abcdefghijklmnopqrstuvwxyz0123456789")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *characters, *("##" + c for c in characters), *WORDS]
    vocab = list(dict.fromkeys(vocab))
    (hf_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(hf_dir / "vocab.txt"), do_lower_case=True, model_max_length=64)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    transformer = Transformer(str(hf_dir), max_seq_length=48)
    modules = [transformer, Pooling(hidden, pooling_mode=pooling)] + ([Normalize()] if normalize else [])
    model = SentenceTransformer(modules=modules, device="cpu")
    model.save(str(directory))
    return directory


def _tiny_bpe_tokenizer(directory: Path):  # type: ignore[no-untyped-def]
    """A CLIP BPE tokenizer over ``WORDS`` (fast, saved with ``tokenizer.json``) and its vocabulary."""
    from transformers import CLIPTokenizer

    characters = list("abcdefghijklmnopqrstuvwxyz0123456789-.,'&/")
    vocab: dict[str, int] = {}
    for character in characters:
        vocab.setdefault(character, len(vocab))
        vocab.setdefault(character + "</w>", len(vocab))
    merges: list[tuple[str, str]] = []
    for word in WORDS:
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:
            merged = pieces[0] + pieces[1]
            if (pieces[0], pieces[1]) not in merges:
                merges.append((pieces[0], pieces[1]))
            vocab.setdefault(merged, len(vocab))
            pieces = [merged, *pieces[2:]]
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=16)
    tokenizer.save_pretrained(directory)
    return tokenizer, vocab


def build_tiny_clip(directory: Path, *, seed: int = 0) -> Path:
    """Saves a random CLIPModel (ViT 32 px, patch 8, hidden 32, 2 layers; projection 16)."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _, vocab = _tiny_bpe_tokenizer(directory)
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"],
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    CLIPModel(config).eval().save_pretrained(directory)
    preprocessor = {
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": 32},
        "resample": 3,
        "do_center_crop": True,
        "crop_size": {"height": 32, "width": 32},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "do_convert_rgb": True,
    }
    (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2), encoding="utf-8")
    return directory


def build_tiny_siglip(directory: Path, *, seed: int = 0) -> Path:
    """Saves a random SiglipModel (ViT 32 px, patch 8, hidden 32, 2 layers) with a fast tokenizer.

    Real SigLIP 2 checkpoints ship a fast (Gemma) tokenizer; this one reuses the tiny CLIP BPE.
    """
    import torch
    from transformers import SiglipConfig, SiglipModel

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer, vocab = _tiny_bpe_tokenizer(directory)
    torch.manual_seed(seed)
    config = SiglipConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "projection_size": 32,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"],
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
    )
    SiglipModel(config).eval().save_pretrained(directory)
    preprocessor = {
        "image_processor_type": "SiglipImageProcessor",
        "do_resize": True,
        "size": {"height": 32, "width": 32},
        "resample": 2,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }
    (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2), encoding="utf-8")
    return directory
