"""Secure Boot with Debian's signed chain: shim, GRUB and MokManager taken from the tree, and GRUB refused when the
shim's SBAT policy revokes it (the firmware would stop at "Verification failed: (0x1A) Security Violation")."""

import struct

import osbuild_stage
from osbuild_stage import StageError

# Where shim-signed, shim-helpers-*-signed and grub-efi-*-signed put them (bookworm and trixie alike).
SHIM = "/usr/lib/shim/shim{suffix}.efi.signed"
MOK_MANAGER = "/usr/lib/shim/mm{suffix}.efi.signed"
GRUB = "/usr/lib/grub/{efi}-signed/grub{suffix}.efi.signed"
PACKAGES = "shim-signed and grub-efi-amd64-signed (and a signed kernel, e.g. linux-image-amd64)"


def esp_files(tree: str, arch: dict, fs_uuid: str, grub_prefix: str) -> dict[str, str | bytes]:
    """The ESP's files, by their path on the ESP: the tree's file to copy, or the bytes to write.

    shim boots as the removable-media loader, loads grubx64.efi from its own directory, and Debian's
    signed GRUB reads /EFI/debian/grub.cfg (its built-in prefix), which finds the filesystem holding
    grub.cfg by its UUID.  fbx64.efi is left out: without a BOOTX64.CSV it resets the machine in a loop.
    """
    names = {"shim": SHIM, "mm": MOK_MANAGER, "grub": GRUB}
    found = {role: osbuild_stage.require(tree, path.format(suffix=arch["efi_suffix"], efi=arch["efi"]),
                                         f"install {PACKAGES} for secure_boot")
             for role, path in names.items()}
    check_sbat(found["shim"], found["grub"])
    suffix = arch["efi_suffix"]
    config = f"search.fs_uuid {fs_uuid} root\nset prefix=($root)'{grub_prefix}'\nconfigfile $prefix/grub.cfg\n"
    return {f"EFI/BOOT/{arch['efi_file']}": found["shim"], f"EFI/BOOT/grub{suffix}.efi": found["grub"],
            f"EFI/BOOT/mm{suffix}.efi": found["mm"], "EFI/debian/grub.cfg": config.encode()}


def _section(path: str, name: bytes) -> bytes:
    import pefile  # python3-pefile: only Secure Boot disks need it
    pe = pefile.PE(path, fast_load=True)
    # A name longer than 8 bytes (.sbatlevel) is "/OFFSET" into the COFF string table after the symbols.
    strings = pe.FILE_HEADER.PointerToSymbolTable + pe.FILE_HEADER.NumberOfSymbols * 18
    for section in pe.sections:
        found = section.Name.rstrip(b"\0")
        if found.startswith(b"/") and found[1:].isdigit():
            start = strings + int(found[1:])
            found = pe.__data__[start:pe.__data__.find(b"\0", start)]
        if found == name:
            return section.get_data()
    raise StageError(f"{path} has no {name.decode()} section: it is not a shim or GRUB with SBAT")


def generations(text: str) -> dict[str, int]:
    """component -> generation, from SBAT's CSV lines ("grub,5,Free Software Foundation,...")."""
    found = {}
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) >= 2 and fields[1].strip().isdigit():
            found[fields[0].strip()] = int(fields[1])
    return found


def shim_policy(sbatlevel: bytes) -> str:
    """The revocations shim 15.7+ applies unless told otherwise ("previous", also called automatic), from its
    .sbatlevel section: a format version, then the offsets of the previous and latest policy strings."""
    _, previous, _ = struct.unpack_from("<III", sbatlevel)
    return sbatlevel[4 + previous:].split(b"\0", 1)[0].decode()


def sbat_refusal(policy: str, grub_sbat: str) -> str | None:
    """Why the firmware would refuse this GRUB under this shim SBAT policy, or None."""
    revoked = generations(policy).get("grub", 0)
    found = generations(grub_sbat).get("grub", 0)
    if found >= revoked:
        return None
    return (f"the tree's signed GRUB has SBAT generation grub,{found}, which its shim revokes (grub,{revoked}): the "
            "firmware would refuse it; install the grub-efi-amd64-signed that matches shim-signed (the same suite and "
            "point release)")


def check_sbat(shim: str, grub: str) -> None:
    refusal = sbat_refusal(shim_policy(_section(shim, b".sbatlevel")),
                           _section(grub, b".sbat").decode(errors="replace").rstrip("\0"))
    if refusal:
        raise StageError(refusal)
