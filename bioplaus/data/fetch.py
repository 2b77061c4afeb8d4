"""Where dataset files are found, how they are verified, downloaded and unpacked.

Layout and discovery
--------------------
The data directory is ``--data-dir`` / ``data_dir``, else ``$BIOPLAUS_DATA``,
else ``~/.cache/bioplaus``. Dataset ``NAME`` is kept in ``<data dir>/NAME/``
(archives unpack to their own folder inside it: ``cifar10/cifar-10-batches-bin/``,
``cifar100/cifar-100-binary/``, ``stl10/stl10_binary/``). A split is looked
for, in order, in the dataset's system folders (Fashion-MNIST: Debian's
``/usr/share/datasets/fashion-mnist/``), then in ``<data dir>/NAME/``, then in
the folders other tools use under the data directory (torchvision's
``FashionMNIST/raw``, ``cifar-10-batches-bin``, ...). The first folder that
holds *all* files of the split is used. An IDX file may be present as the
distributed ``.gz`` or decompressed (the ``.gz`` is preferred).

Verification (before any use)
-----------------------------
* A file that is distributed as such (IDX ``.gz``, SVHN ``.mat``, downloaded
  archives) must have its published md5. An IDX ``.gz`` whose md5 differs
  passes if its decompressed bytes have the SHA-256 recorded in the registry
  (Debian recompresses Fashion-MNIST; see :mod:`bioplaus.data.registry`).
* STL-10's unpacked files have published md5s and are checked against them.
* CIFAR's unpacked ``.bin`` files have no published checksum. When bioplaus
  unpacks a verified archive it writes ``bioplaus-manifest.json`` beside them
  (the md5 of each member, computed while unpacking) and later loads check
  the files against it. Files unpacked by hand (no manifest) and decompressed
  IDX files without a recorded content hash are checked for structure only
  (sizes, header, label ranges); the returned split says so in its
  ``verification`` field.

A file with a wrong checksum is refused unless ``verify=False``.

Downloads
---------
Each file is streamed to a hidden temporary name in the destination folder,
its md5 checked (for Fashion-MNIST's ``.gz`` files the recorded content hash
is accepted too, so a recompressing mirror such as Debian's works), and only
then renamed to its final name; on any failure the temporary file is removed,
so a partial download never becomes a cached file. A download that fails
raises :class:`DataError` listing each URL's error and saying which files to
place by hand, under which names, in which folder.
The opener (``url -> binary stream``) is a parameter, ``urllib.request.urlopen``
by default, which also serves ``file://`` URLs for local mirrors.
"""
from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
from pathlib import Path

from bioplaus.data.registry import DataError, DatasetInfo, check_split, data_root, get_info

MANIFEST = "bioplaus-manifest.json"
CHUNK = 1 << 20


# ----------------------------------------------------------------------------
# Discovery
# ----------------------------------------------------------------------------
def dataset_dir(info: DatasetInfo, data_dir=None) -> Path:
    """``<data dir>/<name>``: where :func:`fetch` puts the dataset's downloads."""
    return data_root(data_dir) / info.name


def files_dir(info: DatasetInfo, data_dir=None) -> Path:
    """The folder of the dataset's files in the cache (archives unpack there)."""
    d = dataset_dir(info, data_dir)
    return d / info.subdir if info.subdir else d


def candidate_dirs(info: DatasetInfo, data_dir=None, search_system: bool = True) -> list[Path]:
    """The folders searched for a split, in order (see the module notes)."""
    root = data_root(data_dir)
    dirs = [Path(d) for d in info.system_dirs] if search_system else []
    dirs.append(files_dir(info, data_dir))
    dirs += [root / s for s in info.search]
    out = []
    for d in dirs:
        d = Path(os.path.normpath(d))
        if d not in out:
            out.append(d)
    return out


def find_file(folder: Path, name: str, fmt: str):
    """The path of ``name`` in ``folder`` (IDX: ``name.gz`` first), or None."""
    options = (name + ".gz", name) if fmt == "idx" else (name,)
    for option in options:
        p = folder / option
        if p.is_file():
            return p
    return None


def locate(info: DatasetInfo, split: str, data_dir=None, search_system: bool = True):
    """The first candidate folder that holds every file of ``split``.

    Returns
    -------
    (folder, paths) : the folder and the path of each file of the split, in
        the order of ``info.files[split]``.

    Raises
    ------
    DataError
        if no folder holds them all; the message lists the folders searched,
        what was found where, and how to obtain the files.
    """
    check_split(info, split)
    names = info.files[split]
    partial = []
    dirs = candidate_dirs(info, data_dir, search_system)
    for folder in dirs:
        paths = [find_file(folder, n, info.fmt) for n in names]
        if all(paths):
            return folder, paths
        have = [p.name for p in paths if p]
        if have:
            missing = [n for n, p in zip(names, paths) if not p]
            partial.append(f"{folder} has {', '.join(have)} but lacks {', '.join(missing)}")
    found = ("; ".join(partial) + ". ") if partial else ""
    raise DataError(
        f"missing file: {info.title} {split!r} split not found; it needs "
        f"{', '.join(n + ('[.gz]' if info.fmt == 'idx' else '') for n in names)}. "
        f"Looked in: {', '.join(map(str, dirs))}. {found}" + manual_instructions(info, data_dir))


def manual_instructions(info: DatasetInfo, data_dir=None) -> str:
    """How to obtain the files: ``bioplaus data fetch`` or placing them by hand."""
    where = dataset_dir(info, data_dir)
    listing = "; ".join(f"{r.filename} from {' or '.join(r.urls)} (md5 {r.md5})" for r in info.remotes)
    unpack = (f" An archive placed there is verified and unpacked on the next load; its unpacked "
              f"folder {info.subdir}/ may be placed there instead.") if info.subdir else ""
    return (f"Run `bioplaus data fetch {info.name}` on a machine with a network, or place the files "
            f"by hand in {where}/ with these names: {listing}.{unpack} "
            f"(The data directory is set by --data-dir or the environment variable BIOPLAUS_DATA.)")


# ----------------------------------------------------------------------------
# Reading and checksums
# ----------------------------------------------------------------------------
def read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def md5_file(path: Path) -> str:
    """md5 of a file, read in chunks (archives can be large)."""
    h = hashlib.md5(usedforsecurity=False)
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return h.hexdigest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_manifest(folder: Path) -> dict:
    p = Path(folder) / MANIFEST
    if not p.is_file():
        return {}
    try:
        return json.loads(p.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{p}: damaged manifest ({exc}); delete it and unpack the archive again "
                        "with `bioplaus data fetch`") from None


def expected_md5(info: DatasetInfo, filename: str, folder: Path, checksums=None):
    """The md5 a file must have, and where that value comes from (or None)."""
    if checksums and filename in checksums:
        return checksums[filename], "given"
    for r in info.remotes:
        if r.filename == filename:
            return r.md5, "published"
    if filename in info.member_md5:
        return info.member_md5[filename], "published"
    manifest = read_manifest(folder)
    if filename in manifest:
        return manifest[filename], f"recorded in {MANIFEST} when unpacking the verified archive"
    return None, None


def bad_checksum(path, got: str, want: str, source: str, name: str, extra: str = "") -> DataError:
    return DataError(f"{path}: bad checksum: md5 {got}, expected {want} ({source}){extra}. The file is "
                     f"damaged or not the genuine one: delete it and run `bioplaus data fetch {name}`, "
                     "or load with verify=False to use it anyway")


# ----------------------------------------------------------------------------
# Writing: cache folder, download, unpack
# ----------------------------------------------------------------------------
def ensure_writable(folder: Path) -> Path:
    """Create ``folder`` if needed and check a file can be written there."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".bioplaus-write-test-"):
            pass
    except OSError as exc:
        raise DataError(f"cache directory {folder} is not writable ({exc.strerror or exc}); choose a "
                        "writable data directory with --data-dir or the environment variable "
                        "BIOPLAUS_DATA") from None
    return folder


def _publish(tmp, dest: Path) -> None:
    """Give a finished temporary file the usual permissions and its final name."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, dest)


def _default_opener(url: str):
    import urllib.request  # noqa: PLC0415

    return urllib.request.urlopen(url, timeout=60)  # noqa: S310  (http(s) and file:// mirrors)


def download(urls, dest: Path, md5: str, opener=None, manual: str = "", accept=None) -> Path:
    """Download the first of ``urls`` that works to ``dest``, checking ``md5``.

    The bytes go to a temporary file beside ``dest`` that is renamed to
    ``dest`` only once its md5 is right (or, failing that, ``accept(path)``
    returns True: a recompressed IDX file whose content hash is recorded);
    whatever fails, no partial file is left. Raises :class:`DataError`
    (with ``manual``, the instructions for placing the file by hand) if
    every URL fails.
    """
    dest = Path(dest)
    ensure_writable(dest.parent)
    opener = opener or _default_opener
    errors = []
    for url in urls:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            h = hashlib.md5(usedforsecurity=False)
            with os.fdopen(fd, "wb") as out, opener(url) as stream:
                while True:
                    chunk = stream.read(CHUNK)
                    if not chunk:
                        break
                    h.update(chunk)
                    out.write(chunk)
            if h.hexdigest() != md5 and not (accept and accept(Path(tmp))):
                errors.append(f"{url}: md5 {h.hexdigest()} is not the published {md5}")
                continue
            _publish(tmp, dest)
            return dest
        except Exception as exc:  # network, HTTP, file and opener errors alike
            errors.append(f"{url}: {type(exc).__name__}: {exc}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise DataError(f"download failed for {dest.name}: {'; '.join(errors)}. {manual}")


def unpack(info: DatasetInfo, archive: Path, data_dir=None, checksums=None, verified=False) -> Path:
    """Verify ``archive`` against its md5 (unless ``verified``) and unpack the
    split files from it.

    Only the files the registry names are taken out of the archive (no other
    path is ever written); each is written to a temporary name and renamed,
    and a manifest of their md5s is written last.
    """
    remote = next(r for r in info.remotes if r.filename == Path(archive).name)
    want = (checksums or {}).get(remote.filename, remote.md5)
    if not verified:
        got = md5_file(archive)
        if got != want:
            raise bad_checksum(archive, got, want, "published", info.name)
    target = ensure_writable(files_dir(info, data_dir))
    wanted = {f"{info.subdir}/{n}": n for split in info.splits for n in info.files[split]}
    manifest = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = wanted.get(member.name.lstrip("./"))
                if name is None or not member.isfile():
                    continue
                want_member = (checksums or {}).get(name, info.member_md5.get(name))
                manifest[name] = _extract_member(tar, member, target / name, want_member, info.name)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{archive}: cannot be unpacked ({exc}); delete it and download it again") from None
    missing = sorted(set(wanted.values()) - set(manifest))
    if missing:
        raise DataError(f"{archive}: lacks {', '.join(missing)} under {info.subdir}/; it is not the "
                        f"genuine {remote.filename}")
    tmp = target / (MANIFEST + ".part")
    tmp.write_text(json.dumps({"archive": remote.filename, "archive_md5": want, "files": manifest},
                              indent=1, sort_keys=True))
    os.replace(tmp, target / MANIFEST)
    return target


def _extract_member(tar, member, dest: Path, want, name) -> str:
    """Copy one archive member to ``dest`` (via a temporary file); its md5."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        h = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, tar.extractfile(member) as src:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                h.update(chunk)
                out.write(chunk)
        if want is not None and h.hexdigest() != want:
            raise bad_checksum(f"{tar.name}:{member.name}", h.hexdigest(), want, "published", name)
        _publish(tmp, dest)
        return h.hexdigest()
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _content_check(info: DatasetInfo, filename: str):
    """For an IDX ``.gz`` with a recorded content hash: a check of that hash."""
    sha = info.content_sha256.get(filename[:-3]) if filename.endswith(".gz") else None
    if sha is None:
        return None

    def accept(path: Path) -> bool:
        from bioplaus.data import formats  # noqa: PLC0415

        try:  # decompressed as a stream, capped at the size the IDX header declares
            return sha256_hex(formats.gunzip_idx(Path(path).read_bytes(), path)) == sha
        except (OSError, DataError):
            return False

    return accept


def fetch(name: str, data_dir=None, *, opener=None, mirrors=None, checksums=None,
          search_system: bool = True) -> dict:
    """Download (if needed), verify and unpack dataset ``name``.

    Parameters
    ----------
    name : dataset name (see :data:`bioplaus.data.DATASETS`).
    data_dir : data directory (default ``$BIOPLAUS_DATA`` or ``~/.cache/bioplaus``).
    opener : callable ``url -> binary stream`` (a context manager); default
        :func:`urllib.request.urlopen`.
    mirrors : base URLs (ending in ``/``) to use instead of the published
        ones; each file is fetched as ``mirror + file name``.
    checksums : ``{file name: md5}`` replacing published values (for a mirror
        that recompressed the files).
    search_system : look in system folders (Debian's) first.

    Returns
    -------
    dict split -> folder where that split's verified files now are.
    """
    from bioplaus.data.loaders import verify_split  # noqa: PLC0415  (avoid an import cycle)

    info = get_info(name)
    manual = manual_instructions(info, data_dir)
    where = {}
    todo = []
    for split in info.splits:
        try:
            folder, paths = locate(info, split, data_dir, search_system)
            verify_split(info, paths, folder, checksums)
            where[split] = folder
        except DataError:
            todo.append(split)
    if not todo:
        return where
    target = ensure_writable(dataset_dir(info, data_dir))
    needed = info.remotes
    if info.fmt == "svhn":
        needed = [r for r in info.remotes if any(r.filename in info.files[s] for s in todo)]
    for r in needed:
        dest = target / r.filename
        want = (checksums or {}).get(r.filename, r.md5)
        accept = _content_check(info, r.filename)
        if not (dest.is_file() and (md5_file(dest) == want or (accept and accept(dest)))):
            urls = tuple(m + r.filename for m in mirrors) if mirrors else r.urls
            download(urls, dest, want, opener=opener, manual=manual, accept=accept)
        if info.subdir:
            unpack(info, dest, data_dir, checksums, verified=True)
    for split in todo:
        folder, paths = locate(info, split, data_dir, search_system=False)
        verify_split(info, paths, folder, checksums)
        where[split] = folder
    return where
