"""AES-256-CBC (base64, PKCS7) used by KIS for execution-notice frames; key and iv come from the ack."""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

KEY_BYTES = 32
IV_BYTES = 16


class NoticeCryptoError(ValueError):
    """The notice could not be encrypted or decrypted; the message never includes the key or iv."""


def _cipher(key: str, iv: str) -> Cipher:
    key_bytes, iv_bytes = key.encode("utf-8"), iv.encode("utf-8")
    if len(key_bytes) != KEY_BYTES or len(iv_bytes) != IV_BYTES:
        raise NoticeCryptoError(
            f"AES-256-CBC needs a {KEY_BYTES}-byte key and a {IV_BYTES}-byte iv, "
            f"got {len(key_bytes)} and {len(iv_bytes)} bytes"
        )
    return Cipher(algorithms.AES(key_bytes), modes.CBC(iv_bytes))


def encrypt_notice(plaintext: str, key: str, iv: str) -> str:
    """Encrypt a `^`-separated notice payload the way KIS does (the simulator's side)."""
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext.encode("utf-8")) + padder.finalize()
    encryptor = _cipher(key, iv).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode("ascii")


def decrypt_notice(ciphertext: str, key: str, iv: str) -> str:
    """Decrypt a base64 notice payload; raise NoticeCryptoError on any malformed input."""
    cipher = _cipher(key, iv)
    try:
        data = base64.b64decode(ciphertext, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NoticeCryptoError("notice payload is not valid base64") from exc
    if not data or len(data) % 16:
        raise NoticeCryptoError(f"notice payload has {len(data)} bytes, not a positive multiple of 16")
    decryptor = cipher.decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
    except ValueError as exc:
        raise NoticeCryptoError("notice payload has bad padding (wrong key or iv?)") from exc
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NoticeCryptoError("decrypted notice is not UTF-8 (wrong key or iv?)") from exc
