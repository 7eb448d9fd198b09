"""``routekit artifacts list|verify|seal|share``."""

from __future__ import annotations

from routekit.cli import common
from routekit.cli.common import Command
from routekit.errors import BadInputError


def _args(a) -> None:
    asub = a.add_subparsers(dest="action", required=True)
    asub.add_parser("list", help="shipped artifacts")
    v = asub.add_parser("verify", help="check an artifact: manifest schema and hash, file hashes, and a trial "
                                       "load that scores one prompt")
    v.add_argument("path", help="a shipped name or an artifact folder (relative paths: from here, else from "
                                "the shipped artifacts folder)")
    common.threads_arg(v)
    sl = asub.add_parser("seal", help="record the manifest's own hash after you edited and checked it")
    sl.add_argument("path", help="an artifact folder")
    sh = asub.add_parser("share", help="store once the files several artifacts of a folder hold (same sha256) in "
                                       "its _shared/ folder; each artifact still loads and is hash-checked")
    sh.add_argument("root", help="a folder of artifact folders (e.g. the shipped artifacts folder)")


def _list() -> int:
    from routekit import artifact

    known = artifact.shipped()
    default = artifact.default_name()
    if not known:
        print("no shipped artifacts found in", artifact.artifacts_root())
    for name, folder in known.items():
        if name == "default":
            continue
        m = artifact.read_manifest(folder, verify=False)
        size = sum(meta.get("bytes", 0) for meta in m.files.values()) / 1e6
        mark = " (default)" if name == default else ""
        pair = m.get("pair", {})
        print(f"{name}{mark}\tkind={m.kind}\t{pair.get('strong')} vs {pair.get('weak')}\t{size:.1f} MB\t{folder}")
    print("random\tkind=random\tbuilt in (seeded baseline)")
    print("length\tkind=length\tbuilt in (length-only baseline: ranks by number of characters)")
    return 0


def run(args) -> int:
    from routekit import artifact

    if args.action == "list":
        return _list()
    if args.action == "share":
        rep = artifact.share(args.root)
        print(f"{rep.artifacts} artifacts: {rep.removed_copies} copies removed, {rep.shared_files} files in "
              f"{artifact.SHARED}/, {rep.bytes_saved / 1e6:.1f} MB saved")
        return 0
    if args.path == "random" or args.path.startswith("random:"):
        raise BadInputError(f"{args.path!r} is the built-in random router (a seeded baseline): it has no "
                            f"artifact to {args.action}")
    if args.path == "length":
        raise BadInputError(f"{args.path!r} is the built-in length-only baseline: it has no artifact to {args.action}")
    folder = artifact.resolve(args.path)
    if args.action == "seal":
        digest = artifact.seal(folder)
        print(f"sealed {folder}: manifest_sha256 {digest}")
        return 0
    m = artifact.verify(folder, load=True, threads=args.threads)
    print(f"OK {m.folder}: kind={m.kind}, format v{m.get('format_version')}, manifest_sha256 "
          f"{m.get('manifest_sha256')}, {len(m.files)} files verified, trial load scored one prompt")
    if not m.get("calibration"):
        print("note: no calibration table: route() needs threshold= (or run `routekit calibrate --write`)")
    return 0


ARTIFACTS = Command("artifacts", "list, verify, seal or share artifacts", _args, run)
