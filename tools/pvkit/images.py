"""Guest images assembled from Debian packages in the cache (nothing is installed on the host).

- the Xen hypervisor binary (from xen-hypervisor-4.17-amd64, gunzipped for QEMU's -kernel);
- the dom0 root filesystem: mmdebstrap of the toolstack and workloads, plus the dom0 build's
  modules and pvkit's init, packed as an ext4 image that QEMU opens read-only (snapshot);
- the domU initramfs: busybox-static, the domU build's modules, pvkit's init and the guest
  programs a scenario needs, copied with their shared libraries out of the dom0 root;
- per run, a payload (the scenario's scripts) as a tar disk for dom0 and a cpio for the domU.

Each image is cached under a key of its inputs and committed by rename when complete.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from pvkit import debs, procs, progress
from pvkit.build import Build
from pvkit.errors import PvkitError
from pvkit.paths import GUEST_DIR, cache_subdir
from pvkit.util import replace_dir, sha256_file, sha256_text, write_atomic

SUITE = "bookworm"
XEN_PACKAGE = "xen-hypervisor-4.17-amd64"
ROOTFS_PACKAGES = ("xen-utils-4.17", "xenstore-utils", "busybox", "kmod", "iproute2",
                   "iperf3", "fio", "procps", "sysbench")
DOM0_MODULES = ("xen-blkback", "xen-netback")
LIB_DIRS = ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu", "usr/lib", "lib")
SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")


@contextmanager
def _staging(final: Path) -> Iterator[Path]:
    """A temporary sibling of `final`, renamed into place only if the block succeeds."""
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    try:
        yield tmp
        replace_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def xen_binary() -> tuple[Path, str]:
    """The uncompressed Xen multiboot image and its package version."""
    pkg = debs.fetch(XEN_PACKAGE)
    out = cache_subdir("images") / f"xen-{pkg.version}" / "xen"
    if not out.exists():
        gz = sorted((pkg.root / "boot").glob("xen-*.gz"))
        if not gz:
            raise PvkitError(f"{pkg.deb}: no boot/xen-*.gz inside")
        with gzip.open(gz[0]) as src:
            write_atomic(out, src.read())
    return out, pkg.version


def rootfs() -> Path:
    """The unpacked dom0 root filesystem (mmdebstrap), cached by its package list."""
    sources = SOURCES.read_text() if SOURCES.exists() else "default"
    key = sha256_text(SUITE, *ROOTFS_PACKAGES, sources, *_EXCLUDES)[:16]
    final = cache_subdir("images") / f"rootfs-{key}"
    if (final / ".pvkit-complete").exists():
        return final
    progress.step(f"assembling the dom0 root filesystem with mmdebstrap ({len(ROOTFS_PACKAGES)} "
                  "packages and their dependencies, about two minutes, once)")
    with _staging(final) as tmp, tempfile.TemporaryDirectory(dir=final.parent) as tardir:
        tar = Path(tardir) / "rootfs.tar"
        cmd = ["mmdebstrap", "--variant=minbase", f"--include={','.join(ROOTFS_PACKAGES)}",
               *[f"--dpkgopt=path-exclude={e}" for e in _EXCLUDES], SUITE, str(tar)]
        if SOURCES.exists():
            cmd.append(str(SOURCES))
        proc = procs.run(cmd, text=True)
        if proc.returncode != 0:
            raise PvkitError(f"mmdebstrap failed: {_last_line(proc.stderr)}")
        subprocess.run(["tar", "-xf", str(tar), "-C", str(tmp)], check=True)
        (tmp / ".pvkit-complete").write_text(key + "\n")
    return final


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _copy_tree(src: Path, dst: Path) -> None:
    subprocess.run(["cp", "-a", f"{src}/.", str(dst)], check=True)


def _install_modules(build: Build, root: Path) -> None:
    src = build.modroot / "lib" / "modules"
    if not src.is_dir():
        return
    dest = root / "usr/lib/modules" if (root / "lib").is_symlink() else root / "lib/modules"
    dest.mkdir(parents=True, exist_ok=True)
    _copy_tree(src, dest)
    for release in os.listdir(src):
        subprocess.run(["depmod", "-b", str(root), release], check=True)


def _modules_key(build: Build) -> str:
    """What an image takes from a kernel build: its modules (the kernel itself is not in the
    image), so a kernel edit that changes no module re-uses the image."""
    return str(build.metadata.get("modules_sha256") or build.metadata["content_key"])


def dom0_image(build: Build, extra_modules: tuple[str, ...] = ()) -> Path:
    """The dom0 root filesystem as an ext4 image, for a given dom0 kernel build."""
    base = rootfs()
    guest = [GUEST_DIR / "dom0-init.sh", GUEST_DIR / "lib.sh"]
    modules = DOM0_MODULES + extra_modules
    key = sha256_text(base.name, _modules_key(build), *modules,
                      *(sha256_file(p) for p in guest))[:16]
    final = cache_subdir("images") / f"dom0-{key}.ext4"
    if final.exists():
        return final
    progress.step(f"packing the dom0 image for kernel {build.release}")
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".dom0-") as tmpdir:
        root = Path(tmpdir) / "root"
        root.mkdir()
        _copy_tree(base, root)
        (root / ".pvkit-complete").unlink(missing_ok=True)
        _install_modules(build, root)
        shutil.copy(GUEST_DIR / "dom0-init.sh", root / "sbin/pvkit-init")
        (root / "sbin/pvkit-init").chmod(0o755)
        shutil.copy(GUEST_DIR / "lib.sh", root / "etc/pvkit-lib.sh")
        (root / "etc/pvkit").mkdir(exist_ok=True)
        (root / "etc/pvkit/modules").write_text("\n".join(modules) + "\n")
        var_run = root / "var/run"
        if not var_run.is_symlink():
            shutil.rmtree(var_run, ignore_errors=True)
            var_run.symlink_to("/run")
        subprocess.run(["ldconfig", "-r", str(root)], check=False)
        size_mb = _du_mb(root) * 5 // 4 + 96
        tmp_img = Path(tmpdir) / "dom0.ext4"
        proc = subprocess.run(
            ["mke2fs", "-q", "-F", "-t", "ext4", "-L", "pvkit-dom0", "-d", str(root),
             str(tmp_img), f"{size_mb}M"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise PvkitError(f"mke2fs failed: {_last_line(proc.stderr)}")
        os.replace(tmp_img, final)
    return final


def _du_mb(path: Path) -> int:
    out = subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True).stdout
    return int(out.split()[0])


def needed_libraries(binary: Path, root: Path) -> list[Path]:
    """Shared libraries a program needs (DT_NEEDED, transitively), as paths inside `root`."""
    found: dict[str, Path] = {}
    todo = [binary]
    while todo:
        current = todo.pop()
        names: list[str] = []
        runpath: list[str] = []
        with current.open("rb") as handle:
            elf = ELFFile(handle)
            interp = [s for s in elf.iter_segments() if s["p_type"] == "PT_INTERP"]
            names = [interp[0].get_interp_name()] if interp else []
            for section in elf.iter_sections():
                if not isinstance(section, DynamicSection):
                    continue
                for tag in section.iter_tags():
                    if tag.entry.d_tag == "DT_NEEDED":
                        names.append(tag.needed)
                    elif tag.entry.d_tag in ("DT_RUNPATH", "DT_RPATH"):
                        origin = "/" + str(current.parent.relative_to(root))
                        text = tag.runpath if tag.entry.d_tag == "DT_RUNPATH" else tag.rpath
                        runpath += [d.replace("$ORIGIN", origin) for d in text.split(":")]
        for name in names:
            base = os.path.basename(name)
            if base in found:
                continue
            path = _find_library(name, root, runpath)
            found[base] = path
            todo.append(path)
    return list(found.values())


def _find_library(name: str, root: Path, runpath: list[str] | None = None) -> Path:
    dirs = [d.lstrip("/") for d in runpath or []] + list(LIB_DIRS)
    candidates = [root / name.lstrip("/")] if name.startswith("/") else [
        root / d / name for d in dirs]
    for cand in candidates:
        if cand.exists():
            return cand
    raise PvkitError(f"shared library {name} not found in {root}")


def domu_initramfs(build: Build, needs: tuple[str, ...] = ()) -> Path:
    """The domU's base initramfs (gzip cpio): busybox-static, init, modules, programs."""
    busybox = debs.fetch("busybox-static")
    base = rootfs() if needs else None
    guest = [GUEST_DIR / "domU-init.sh", GUEST_DIR / "lib.sh"]
    key = sha256_text(busybox.version, _modules_key(build), *needs,
                      base.name if base else "", *(sha256_file(p) for p in guest))[:16]
    final = cache_subdir("images") / f"domU-{key}.cpio.gz"
    if final.exists():
        return final
    progress.step(f"packing the domU initramfs for kernel {build.release}")
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".domU-") as tmpdir:
        root = Path(tmpdir) / "root"
        for d in ("bin", "sbin", "etc/pvkit", "pvkit", "usr/bin", "usr/lib", "lib64"):
            (root / d).mkdir(parents=True, exist_ok=True)
        shutil.copy(busybox.root / "bin/busybox", root / "bin/busybox")
        shutil.copy(GUEST_DIR / "domU-init.sh", root / "init")
        (root / "init").chmod(0o755)
        shutil.copy(GUEST_DIR / "lib.sh", root / "pvkit/lib.sh")
        (root / "lib").symlink_to("usr/lib")
        _install_modules(build, root)
        if base is not None:
            for program in needs:
                _copy_program(program, base, root)
        tmp_cpio = Path(tmpdir) / "initrd.cpio.gz"
        tmp_cpio.write_bytes(pack_cpio(root))
        os.replace(tmp_cpio, final)
    return final


def _find_program(program: str, base: Path) -> Path:
    """A program of the dom0 root filesystem (a real file, not a link to busybox)."""
    for d in ("usr/bin", "usr/sbin", "bin", "sbin"):
        src = base / d / program
        if src.exists() and not src.is_symlink():
            return src
    raise PvkitError(f"guest program '{program}' not found in the dom0 root filesystem; "
                     f"add its package to ROOTFS_PACKAGES")


def _copy_program(program: str, base: Path, root: Path) -> None:
    src = _find_program(program, base)
    shutil.copy(src, root / "usr/bin" / program)
    for lib in needed_libraries(src, base):
        rel = lib.relative_to(base)
        dest = root / "usr/lib" / lib.name if not str(rel).startswith("lib64") else root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(lib.resolve(), dest)


def pack_cpio(root: Path) -> bytes:
    """A gzip'd newc cpio of a directory, entries sorted, owned by root."""
    names = sorted(
        str(p.relative_to(root)) for p in root.rglob("*")
    )
    proc = subprocess.run(
        ["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet"], cwd=root,
        input="\n".join(names).encode() + b"\n", capture_output=True)
    if proc.returncode != 0:
        raise PvkitError(f"cpio failed: {_last_line(proc.stderr.decode())}")
    return gzip.compress(proc.stdout, compresslevel=6, mtime=0)


def write_tree(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
        if path.suffix == ".sh" or rel.startswith("bin/"):
            path.chmod(0o755)


# After the archives of a domU's initramfs: NULs, which the kernel skips between archives.
# libxc gunzips a gzip ramdisk itself before it loads it into a PV guest, sized by the last
# four bytes of the file (the gzip trailer's length of the LAST member) and inflating only
# the FIRST member: once the appended payload's unpacked size exceeded the whole file's
# packed size, the guest got the base archive alone and no /pvkit (seen with the resize
# scenario's payload). With zeros last, the length reads 0, libxc calls the size insane and
# loads the file as it is, and the kernel unpacks every archive.
INITRD_TAIL = b"\0" * 512


def domu_payload(files: dict[str, str | bytes], workdir: Path) -> bytes:
    """The scenario's domU files as a cpio to append to the base initramfs (INITRD_TAIL
    included)."""
    root = workdir / "domU-payload"
    write_tree(root / "pvkit", files)
    return pack_cpio(root) + INITRD_TAIL


def dom0_payload(files: dict[str, str | bytes], vmlinux: Path | None, initrd: bytes | None,
                 workdir: Path) -> Path:
    """The dom0 payload disk: a tar (read by dom0 straight from /dev/vdb)."""
    root = workdir / "dom0-payload"
    write_tree(root, files)
    shutil.copy(GUEST_DIR / "lib.sh", root / "lib.sh")
    if vmlinux is not None and initrd is not None:
        (root / "domU").mkdir(exist_ok=True)
        shutil.copy(vmlinux, root / "domU/vmlinux")
        (root / "domU/initrd").write_bytes(initrd)
    tar = workdir / "payload.tar"
    _tar_disk(root, tar)
    return tar


def _tar_disk(root: Path, tar: Path) -> None:
    """A tar of a directory that a guest reads straight from a disk: padded to whole
    sectors (plus end blocks) so the virtio disk exposes every byte."""
    subprocess.run(["tar", "-cf", str(tar), "-C", str(root), "."], check=True)
    size = tar.stat().st_size
    with tar.open("ab") as handle:
        handle.write(b"\0" * ((-size) % 512 + 1024 * 10))


def tools_tar(programs: tuple[str, ...]) -> Path:
    """Guest programs too large for an initramfs (fio pulls in 80 MB of libraries), with their
    libraries, as a tar that a guest reads straight from a disk: bin/, lib/ (flat)."""
    base = rootfs()
    key = sha256_text(base.name, *programs)[:16]
    final = cache_subdir("images") / f"tools-{key}.tar"
    if final.exists():
        return final
    progress.step(f"packing the guest tools disk ({', '.join(programs)})")
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".tools-") as tmpdir:
        root = Path(tmpdir) / "root"
        (root / "bin").mkdir(parents=True)
        (root / "lib").mkdir()
        for program in programs:
            src = _find_program(program, base)
            shutil.copy(src, root / "bin" / program)
            for lib in needed_libraries(src, base):
                shutil.copy(lib.resolve(), root / "lib" / lib.name)
        tmp_tar = Path(tmpdir) / "tools.tar"
        _tar_disk(root, tmp_tar)
        os.replace(tmp_tar, final)
    return final
