"""Stage `weights`: download torchvision's ImageNet weights of classifiers into torch's cache, the
one command that downloads (`train.pretrained: imagenet` reads them from there, never from the
network; `segsweep.model.pretrained`), then check that each classifier loads them."""

from __future__ import annotations

import argparse

from segsweep.model.classifiers import CLASSIFIERS, build_classifier
from segsweep.model.pretrained import download


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segsweep weights",
        description="download torchvision's ImageNet weights of classifiers into torch's cache "
        "(train.pretrained: imagenet; TORCH_HOME moves the cache), then check that each "
        "classifier loads them: the one command that downloads",
    )
    parser.add_argument("models", nargs="+", choices=CLASSIFIERS, help="classifiers")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Download the weights of the classifiers named, check they load, print where they are."""
    args = _parser().parse_args(argv)
    for name in args.models:
        path = download(name)
        build_classifier({"model": name, "dropout": 0.0}, 1, 2, pretrained="imagenet")
        print(f"{name}: {path}", flush=True)


if __name__ == "__main__":
    main()
