"""Builds the Lambda assets on the local machine, without Docker.

Code: one folder per function holding `shared/`, `functions/__init__.py` and
`functions/<name>/`. Dependencies: `requirements-lambda.lock` (requirements-lambda.txt locked with
every hash by `make lock`) pip-installed once, for the Lambda platform (arm64, CPython 3.12),
into a layer every function uses; pip checks each wheel against the lock's hashes.

Folders are content-addressed under `.build/lambda/` so a rebuild with unchanged sources reuses
the previous one, and two synths running at once never write into the same folder.

    python -m infra.build_assets        # builds everything, prints the folders
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_ROOT = REPO_ROOT / ".build" / "lambda"
REQUIREMENTS = REPO_ROOT / "requirements-lambda.lock"
# The root CAs the functions verify RDS Proxy's certificate against (sslmode=verify-full),
# checked in; this folder is a layer of its own (nothing to build, and a change of it does not
# re-download the dependencies). Layers are mounted at /opt.
ROOT_CERTS_DIR = REPO_ROOT / "infra" / "certs"
ROOT_CERTS_FILE = "amazon-trust-services-roots.pem"
LAYER_ROOT_CERT = f"/opt/{ROOT_CERTS_FILE}"

FUNCTION_NAMES = ("enqueue", "status", "process_payment", "notify", "sweeper", "migrate")

# The Lambda platform: Graviton (arm64), CPython 3.12, glibc 2.34 (Amazon Linux 2023). pip
# takes each --platform tag literally, so both wheel generations are named: psycopg2-binary
# ships aarch64 wheels only as manylinux_2_28, pydantic-core only as manylinux2014 (2_17).
PIP_PLATFORM_ARGS = (
    "--platform",
    "manylinux_2_28_aarch64",
    "--platform",
    "manylinux2014_aarch64",
    "--implementation",
    "cp",
    "--python-version",
    "3.12",
    "--only-binary=:all:",
)

_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache")


def _tree_files(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("__pycache__", ".pytest_cache", ".mypy_cache"))
        for filename in sorted(filenames):
            if not filename.endswith(".pyc"):
                yield Path(dirpath) / filename


def _fingerprint(paths: Iterable[tuple[str, Path]], salt: str = "") -> str:
    digest = hashlib.sha256(salt.encode())
    for relative, path in paths:
        digest.update(relative.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def _publish(tmp: Path, final: Path) -> Path:
    """Moves a finished build into place; a concurrent build of the same content wins the race."""
    try:
        tmp.rename(final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not final.is_dir():
            raise
    _prune(final)
    return final


def _prune(current: Path, keep: int = 3, grace_seconds: float = 3600) -> None:
    """Deletes older builds of the same asset, keeping the newest few and any from the last hour
    (another synthesis may still be reading them)."""
    prefix = current.name.rsplit("-", 1)[0] + "-"
    siblings = sorted(
        (p for p in current.parent.glob(f"{prefix}*") if p.is_dir() and p != current),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    cutoff = time.time() - grace_seconds
    for old in siblings[keep - 1 :]:
        if old.stat().st_mtime < cutoff:
            shutil.rmtree(old, ignore_errors=True)


def function_sources(name: str, repo_root: Path = REPO_ROOT) -> list[tuple[str, Path]]:
    """(path inside the asset, source file) for one function; whatever of it exists today."""
    sources: list[tuple[str, Path]] = []
    for top in (repo_root / "shared", repo_root / "functions" / name):
        if top.is_dir():
            sources += [(str(p.relative_to(repo_root)), p) for p in _tree_files(top)]
    package_init = repo_root / "functions" / "__init__.py"
    if package_init.is_file():
        sources.append(("functions/__init__.py", package_init))
    return sources


def build_function_code(name: str, build_root: Path = BUILD_ROOT, repo_root: Path = REPO_ROOT) -> Path:
    """The asset folder of one function's code (no third-party packages)."""
    sources = function_sources(name, repo_root)
    final = build_root / f"code-{name}-{_fingerprint(sources)}"
    if final.is_dir():
        return final
    build_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".code-{name}-", dir=build_root))
    for relative, path in sources:
        target = tmp / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return _publish(tmp, final)


def dependencies_dir(requirements: Path = REQUIREMENTS, build_root: Path = BUILD_ROOT, *, install: bool = True) -> Path:
    """Where the layer for these requirements is (or would be) built."""
    sources = [("requirements", requirements)] if requirements.is_file() else []
    salt = " ".join(PIP_PLATFORM_ARGS) + ("" if install else " [not installed]")
    return build_root / f"deps-{_fingerprint(sources, salt)}"


def build_dependencies(
    requirements: Path = REQUIREMENTS,
    build_root: Path = BUILD_ROOT,
    *,
    install: bool = True,
    pip: Sequence[str] = (sys.executable, "-m", "pip"),
) -> Path:
    """The layer folder (`python/` inside) with the runtime requirements installed for Lambda.

    With `install=False` the layer holds only the requirements file: the template is the same
    shape, synthesis takes seconds instead of a download. Used by the assertion tests.
    """
    text = requirements.read_text() if requirements.is_file() else ""
    final = dependencies_dir(requirements, build_root, install=install)
    if final.is_dir():
        return final
    build_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".deps-", dir=build_root))
    site = tmp / "python"
    site.mkdir()
    (site / requirements.name).write_text(text)
    if install and text.strip():
        _pip_install(pip, site, ["-r", str(requirements)])
        botocore = _installed_version(site, "botocore")
        if botocore and not _installed_version(site, "boto3"):
            # Something (the X-Ray SDK) pulled in botocore, which shadows the runtime's copy;
            # ship a boto3 made for that botocore so the two never mismatch.
            _pip_install(pip, site, ["boto3", f"botocore=={botocore}"])
    return _publish(tmp, final)


def _pip_install(pip: Sequence[str], target: Path, requirements: Sequence[str]) -> None:
    subprocess.run(  # noqa: S603 - fixed argv, no shell
        [
            *pip,
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--upgrade",
            "--target",
            str(target),
            *PIP_PLATFORM_ARGS,
            *requirements,
        ],
        check=True,
    )


def _installed_version(site: Path, distribution: str) -> str | None:
    for dist_info in site.glob(f"{distribution}-*.dist-info"):
        return dist_info.name.removeprefix(f"{distribution}-").removesuffix(".dist-info")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    install = "--no-deps" not in args
    print(build_dependencies(install=install))
    for name in FUNCTION_NAMES:
        print(build_function_code(name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
