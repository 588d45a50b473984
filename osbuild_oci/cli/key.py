"""`osbuild-oci key`: make the key pair that signs pushed images and verifies pulled ones."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..errors import UserError
from .common import app, command, group

key_app = group("Make signing keys for pushed stage images and trees.")
app.add_typer(key_app, name="key")

PASSPHRASE_HELP = "File whose first line is the key's passphrase [default: no passphrase]"


@command(key_app, name="generate")
def key_generate(
    name: Path = typer.Argument(..., help="Writes NAME.key (private, 0600) and NAME.pub (public)"),
    passphrase_file: Optional[Path] = typer.Option(None, "--passphrase-file", metavar="FILE", dir_okay=False,
                                                   help=PASSPHRASE_HELP),
) -> None:
    """Write a sigstore key pair (ECDSA P-256, cosign's format): sign with NAME.key, trust NAME.pub."""
    from ..registry import keys
    for path in (name.with_name(name.name + ".key"), name.with_name(name.name + ".pub")):
        if path.exists():
            raise UserError(f"{path} already exists; choose another NAME or remove it")
    try:
        passphrase = keys.read_passphrase(passphrase_file)
    except OSError as err:
        raise UserError(f"--passphrase-file {passphrase_file}: cannot read it: {err.strerror}") from None
    try:
        private, public = keys.generate(name, passphrase)
    except OSError as err:
        raise UserError(f"cannot write {err.filename}: {err.strerror}") from None
    if passphrase_file is None:
        print(f"warning: {private} is sealed with the empty passphrase: whoever can read the file can sign with "
              "it; give --passphrase-file FILE to seal it with a passphrase", file=sys.stderr)
    print(f"{private}  (private: sign with --sign-key"
          f"{' --sign-passphrase-file ' + str(passphrase_file) if passphrase_file else ''})")
    print(f"{public}  (public: verify with --trust-key)")
