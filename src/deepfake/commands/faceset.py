"""`deepfake faceset info|clean FACESET`: parse arguments, call deepfake.faceset.tools."""

from __future__ import annotations

import argparse

from deepfake.commands import Help
from deepfake.config import CleanThresholds, FacesetInfoConfig
from deepfake.config.options import add_options, config_from_args

HELP = "inspect (info) or clean a faceset"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    info = sub.add_parser(
        "info",
        help="counts, a pose histogram and a contact sheet (PNG)",
        formatter_class=Help,
    )
    info.add_argument("faceset", metavar="FACESET")
    info.add_argument("-o", "--output", default=None, metavar="DIR", help="where to save the PNGs (default: FACESET/info)")
    add_options(info, FacesetInfoConfig)

    clean = sub.add_parser(
        "clean",
        help="drop blurry faces, extreme poses and other identities (moved to FACESET/removed/)",
        formatter_class=Help,
    )
    clean.add_argument("faceset", metavar="FACESET")
    add_options(clean, CleanThresholds)
    clean.add_argument("--reference", nargs="+", default=[], metavar="IMG", help="the person to keep (default: the faceset's main identity)")
    clean.add_argument("--dry-run", action="store_true", help="only report what would be dropped")


def run(args: argparse.Namespace) -> int:
    from deepfake.faceset import tools as faceset_tools

    if args.action == "info":
        opts = config_from_args(FacesetInfoConfig, args)
        info = faceset_tools.faceset_info(args.faceset, args.output, opts.sheet_faces)
        for line in info.lines():
            print(line)
        return 0
    reference = None
    if args.reference:
        from deepfake.config import ExtractConfig
        from deepfake.extract import reference_embedding
        from deepfake.faces.analyzer import FaceAnalyzer

        reference = reference_embedding(args.reference, FaceAnalyzer(ExtractConfig()))
    th = config_from_args(CleanThresholds, args)
    result = faceset_tools.clean_faceset(args.faceset, th, reference, dry_run=args.dry_run)
    for line in result.lines():
        print(line)
    return 0
