"""Finding model directories and verifying them against their manifest."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pydantic import ValidationError

from nluserve.errors import ModelIntegrityError, ModelNotFoundError
from nluserve.models.manifest import Manifest
from nluserve.models.outdir import MANIFEST, PARTIAL_MARK

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "bundled"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def search_dirs() -> list[Path]:
    """Directories holding model directories: ``NLUSERVE_MODELS_DIR`` entries, then bundled."""
    extra = os.environ.get("NLUSERVE_MODELS_DIR", "")
    return [Path(p) for p in extra.split(os.pathsep) if p] + [BUNDLED_DIR]


def available() -> dict[str, Path]:
    """Installed model names mapped to their directories (first search dir wins)."""
    found: dict[str, Path] = {}
    for base in search_dirs():
        if base.is_dir():
            for child in sorted(base.iterdir()):
                if (child / MANIFEST).is_file():
                    found.setdefault(child.name, child)
    return found


def resolve(name_or_path: str | os.PathLike[str]) -> Path:
    """A bundled/installed model name or a path to a model directory -> its directory."""
    text = os.fspath(name_or_path)
    path = Path(text)
    if path.is_dir():
        return path
    models = available()
    if text in models:
        return models[text]
    if os.sep in text or path.exists():
        raise ModelNotFoundError(f"{text}: not a model directory")
    names = ", ".join(models) or "none"
    raise ModelNotFoundError(f"unknown model {text!r}; installed models: {names}")


def configured(refs: list[str]) -> dict[str, tuple[Path, Manifest] | None]:
    """Each configured model reference with its directory and manifest (None: it does not
    resolve or its manifest is unreadable; loading it reports why)."""
    found: dict[str, tuple[Path, Manifest] | None] = {}
    for ref in refs:
        try:
            directory = resolve(ref)
            found[ref] = (directory, read_manifest(directory))
        except (ModelNotFoundError, ModelIntegrityError):
            found[ref] = None
    return found


def served_names(refs: list[str]) -> frozenset[str]:
    """The names the configured models serve under, read from their manifests.

    A reference that does not resolve counts under its own name: the CLI should not refuse a
    scope for a model the configuration names just because this machine lacks its files.
    """
    return frozenset(
        Path(ref).name if entry is None else entry[1].name
        for ref, entry in configured(refs).items()
    )


def read_manifest(model_dir: Path) -> Manifest:
    """Parse ``manifest.json`` with a clear error when it is missing or invalid."""
    path = model_dir / MANIFEST
    if not path.is_file():
        raise ModelIntegrityError(f"{model_dir}: missing {MANIFEST}")
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        # One line per CLI error: the first few fields pydantic names, not its whole dump.
        said = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'manifest'}: {e['msg']}"
            for e in exc.errors()[:3]
        )
        raise ModelIntegrityError(f"{path}: invalid manifest: {said}") from exc


def verify(model_dir: Path, manifest: Manifest) -> None:
    """Check every file listed in the manifest exists and matches its SHA-256."""
    if manifest.graph not in manifest.files:
        raise ModelIntegrityError(f"{model_dir}: manifest lists no checksum for {manifest.graph}")
    for name in manifest.files:
        # Names inside this directory only: "../../etc/hostname" is not part of a model.
        if Path(name).name != name or name in (".", ".."):
            raise ModelIntegrityError(f"{model_dir}: manifest names a file outside it: {name!r}")
    # The loader reads optional files when present (lexicon.txt, ngrams.json): one the manifest
    # does not list was added after the model was made, and would be read unverified.
    unlisted = sorted(
        p.name
        for p in model_dir.iterdir()
        if p.is_file() and p.name not in manifest.files and p.name not in (MANIFEST, PARTIAL_MARK)
    )
    if unlisted:
        raise ModelIntegrityError(
            f"{model_dir}: files the manifest does not list: {', '.join(unlisted)}"
        )
    for name, expected in manifest.files.items():
        path = model_dir / name
        if not path.is_file():
            raise ModelIntegrityError(f"{model_dir}: missing file {name}")
        actual = sha256_file(path)
        if actual != expected:
            raise ModelIntegrityError(
                f"{model_dir}: checksum mismatch for {name} "
                f"(manifest {expected[:12]}…, file {actual[:12]}…); the file is corrupted or was edited"
            )


def write_manifest(model_dir: Path, manifest: Manifest) -> Manifest:
    """Fill in checksums of every other file in the directory and write the manifest."""
    files = {
        p.name: sha256_file(p)
        for p in sorted(model_dir.iterdir())
        if p.is_file() and p.name not in (MANIFEST, PARTIAL_MARK)
    }
    done = manifest.model_copy(update={"files": files})
    (model_dir / MANIFEST).write_text(
        done.model_dump_json(indent=2, exclude_none=True), encoding="utf-8"
    )
    return done
