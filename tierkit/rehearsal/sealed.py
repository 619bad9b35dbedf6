"""Secret outputs in the rehearsal's record, encrypted (Fernet) with a key kept outside the
project, as Pulumi's passphrase secrets provider keeps them out of a state in plaintext.

The key is `$XDG_STATE_HOME/tierkit/rehearsal.key` (default `~/.local/state/...`, 0600, made on
first use): a checkout, or a copy of the record, holds only ciphertext. A machine without the key
cannot open a sealed value, and the rehearsal's `up` stops there (as Pulumi does without the
stack's passphrase) rather than running the command again, which would trust anew what the record
pinned."""

from __future__ import annotations

import os
import threading
from pathlib import Path

PREFIX = "fernet:"
_making = threading.Lock()  # commands finish in parallel: one of them makes the key


def key_path() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "tierkit" / "rehearsal.key"


def seal_text(text: str) -> str:
    """`fernet:<token>`: `text` encrypted with this machine's rehearsal key (made on first use)."""
    from cryptography.fernet import Fernet

    path = key_path()
    with _making:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(Fernet.generate_key())
            try:
                os.link(tmp, path)  # never over a key another process made meanwhile
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
    return PREFIX + Fernet(path.read_bytes()).encrypt(text.encode()).decode()


def open_text(value: str | None) -> str | None:
    """A recorded output as text; None when it is sealed and this machine's key cannot open it."""
    if value is None or not value.startswith(PREFIX):
        return value
    from cryptography.fernet import Fernet, InvalidToken

    try:
        return Fernet(key_path().read_bytes()).decrypt(value.removeprefix(PREFIX).encode()).decode()
    except (OSError, ValueError, InvalidToken):
        return None
