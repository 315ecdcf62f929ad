"""Command line: ``python -m similarity {prepare,embed,info}``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from similarity.embedding.preprocess import DEFAULT_POLICY_NAME, POLICIES
from similarity.errors import SimilarityError
from similarity.model.spec import DEFAULT_PRECISION, EMBEDDING_DIM, PRECISIONS


def _cmd_prepare(args: argparse.Namespace) -> int:
    from similarity.model.cache import ensure_model
    from similarity.model.spec import ModelIdentity

    path = ensure_model(args.model_dir, ModelIdentity(precision=args.precision))
    print(f"converted model ready: {path}")
    return 0


def _cmd_embed(args: argparse.Namespace) -> int:
    from similarity.embedding.embedder import ImageEmbedder, stack_prepared

    embedder = ImageEmbedder(model_dir=args.model_dir, policy=args.preprocess, precision=args.precision)
    vectors = np.empty((len(args.images), EMBEDDING_DIM), dtype=np.float32)
    with tqdm(total=len(args.images), unit="img", disable=args.quiet) as bar:
        for start in range(0, len(args.images), embedder.batch_size):
            chunk = args.images[start : start + embedder.batch_size]
            prepared = embedder.prepare_many(chunk)
            for path, item in zip(chunk, prepared, strict=True):
                if item.error is not None:
                    print(f"error: {path}: {item.error.message}", file=sys.stderr)
                    return 2
            vectors[start : start + len(chunk)] = embedder.embed_arrays(stack_prepared(prepared))
            bar.update(len(chunk))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, vectors, allow_pickle=False)
    print(f"wrote {vectors.shape[0]}x{vectors.shape[1]} float32 vectors to {args.out} "
          f"(policy {embedder.policy.key}, model {embedder.model.key})")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from similarity.embedding.preprocess import get_policy
    from similarity.index.store import FORMAT_VERSION, MatrixStore
    from similarity.model.spec import ModelIdentity

    info = MatrixStore.info(args.path)
    # A matrix in a projected space records "<policy>+<space>": the policy part says how its
    # vectors were made; the space's own currency is checked by the catalog that fitted it.
    policy, _, space = str(info["policy"] or "").partition("+")
    info["space"] = space or "raw"
    if info["n"]:
        info["policy"] = policy
    expected = {
        "weights_sha256": ModelIdentity().weights_sha256,
        "policy": get_policy(args.preprocess).key,
        "metric": args.metric,
        "format": FORMAT_VERSION,
    }
    differs = [f"{key} is {info[key]!r}, current code uses {want!r}"
               for key, want in expected.items() if info["n"] and info[key] != want]
    info["model"] = f"MobileNetV2 (torchvision ImageNet weights, sha256 {str(info['weights_sha256'])[:16]}…)"
    info["stale"] = bool(differs)
    info["stale_because"] = differs
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    rows = [
        ("directory", info["directory"]),
        ("size", f"{info['n']} products, {info['bytes']:,} bytes on disk"),
        ("model", info["model"] if info["n"] else "-"),
        ("policy", info["policy"]),
        ("space", info["space"]),
        ("metric", info["metric"]),
        ("generation", f"{info['generation']} + {info['deltas']} deltas"),
        ("stale", "yes: " + "; ".join(differs) if differs else "no"),
    ]
    for key, value in rows:
        print(f"{key:>10}: {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m similarity", description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=Path("var/models"),
                        help="where the converted model is cached (default ./var/models; Django's "
                             "setting LOOKALIKE_MODEL_DIR in a deployment)")
    sub = parser.add_subparsers(dest="command", required=True)

    prepare = sub.add_parser("prepare", help="convert the MobileNetV2 weights to LiteRT and cache them")
    prepare.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION,
                         help="fp32 (default) or int8 (post-training quantised)")

    embed = sub.add_parser("embed", help="embed images into an N x 1280 float32 .npy")
    embed.add_argument("images", nargs="+", help="JPEG, PNG, WebP or GIF files")
    embed.add_argument("--out", type=Path, required=True, help="output .npy path")
    embed.add_argument("--preprocess", default=DEFAULT_POLICY_NAME,
                       help=f"preprocessing policy: {', '.join(POLICIES)}")
    embed.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION,
                       help="model precision: fp32 (default) or int8")
    embed.add_argument("--quiet", action="store_true", help="no progress bar")

    info = sub.add_parser("info", help="describe a stored distance matrix and whether it is stale")
    info.add_argument("path", type=Path, help="the matrix directory")
    info.add_argument("--preprocess", default=DEFAULT_POLICY_NAME,
                      help="policy the current code uses (to judge staleness)")
    info.add_argument("--metric", default="euclidean", help="metric the current code uses")
    info.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"prepare": _cmd_prepare, "embed": _cmd_embed, "info": _cmd_info}
    try:
        return handlers[args.command](args)
    except SimilarityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
