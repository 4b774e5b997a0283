"""WeCom callback encryption ("WXBizMsgCrypt"), reimplemented on `cryptography`.

WeCom signs every callback with ``sha1(sorted(token, timestamp, nonce, encrypt))`` and
encrypts the payload with AES-256-CBC (key = base64(EncodingAESKey + "="), IV = key[:16])
over ``random16 + big-endian uint32 length + message + receive_id``, PKCS#7-padded to 32
bytes.  The receive id is the CorpID for an internal app.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
import xml.etree.ElementTree as ET
from typing import NoReturn
from xml.parsers import expat

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["CallbackRejected", "WeComCrypto", "parse_xml"]

_BLOCK = 32  # WeCom pads to 32 bytes, not the AES block size
_RANDOM_LEN = 16
_LEN_PREFIX = 4


class CallbackRejected(Exception):
    """A callback failed verification or could not be parsed; the web layer answers 403."""


def _refuse_declarations(*_args: object) -> NoReturn:
    raise CallbackRejected("XML declarations (DOCTYPE/ENTITY) are not accepted")


def parse_xml(data: bytes | str) -> ET.Element:
    """Parse untrusted XML, refusing any DOCTYPE or entity declaration.

    The document is scanned with a bare expat parser first so that a declaration is
    rejected before anything could expand; text that merely *mentions* "<!DOCTYPE"
    inside CDATA (a member's chat message) is still accepted.
    """
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise CallbackRejected("XML is not UTF-8") from None
    else:
        text = data
    scanner = expat.ParserCreate()
    scanner.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    scanner.StartDoctypeDeclHandler = _refuse_declarations
    scanner.EntityDeclHandler = _refuse_declarations
    scanner.UnparsedEntityDeclHandler = _refuse_declarations
    scanner.ExternalEntityRefHandler = _refuse_declarations
    try:
        scanner.Parse(text, True)
        return ET.fromstring(text)
    except (expat.ExpatError, ET.ParseError):
        raise CallbackRejected("malformed XML") from None


class WeComCrypto:
    """Signs, verifies, encrypts and decrypts WeCom callbacks for one app."""

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        try:
            key = base64.b64decode(encoding_aes_key + "=", validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("EncodingAESKey is not valid base64") from None
        if len(key) != 32:
            raise ValueError("EncodingAESKey must decode to 32 bytes (43 characters)")
        if not token or not receive_id:
            raise ValueError("token and receive_id are required")
        self._token = token
        self._key = key
        self._receive_id = receive_id.encode("utf-8")

    @property
    def token(self) -> str:
        return self._token

    @property
    def receive_id(self) -> str:
        return self._receive_id.decode("utf-8")

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16]))

    def signature(self, timestamp: str, nonce: str, encrypted: str) -> str:
        """The msg_signature WeCom computes for these values."""
        joined = "".join(sorted([self._token, timestamp, nonce, encrypted]))
        return hashlib.sha1(joined.encode("utf-8")).hexdigest()

    def _check_signature(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> None:
        expected = self.signature(timestamp, nonce, encrypted).encode("ascii")
        # Bytes, not str: compare_digest refuses non-ASCII str, and the input is attacker-controlled.
        if not hmac.compare_digest(expected, msg_signature.encode("utf-8")):
            raise CallbackRejected("signature mismatch")

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """Answer WeCom's GET URL verification: check the signature, return the decrypted echostr."""
        self._check_signature(msg_signature, timestamp, nonce, echostr)
        return self.decrypt(echostr)

    def decrypt_callback(self, msg_signature: str, timestamp: str, nonce: str, body: bytes | str) -> str:
        """Verify and decrypt a POSTed callback envelope; return the inner plaintext XML."""
        root = parse_xml(body)
        encrypted = root.findtext("Encrypt")
        if root.tag != "xml" or not encrypted:
            raise CallbackRejected("envelope has no Encrypt element")
        encrypted = encrypted.strip()
        # The signature is checked before any decryption, so the padding and length
        # checks below are never reachable by someone without the token (no padding oracle).
        self._check_signature(msg_signature, timestamp, nonce, encrypted)
        return self.decrypt(encrypted)

    def encrypt(self, plaintext: str, *, random16: bytes | None = None) -> str:
        """Encrypt a message the way WeCom does; ``random16`` fixes the random prefix for tests."""
        prefix = os.urandom(_RANDOM_LEN) if random16 is None else random16
        if len(prefix) != _RANDOM_LEN:
            raise ValueError("random16 must be exactly 16 bytes")
        msg = plaintext.encode("utf-8")
        raw = prefix + struct.pack(">I", len(msg)) + msg + self._receive_id
        pad = _BLOCK - len(raw) % _BLOCK
        raw += bytes([pad]) * pad
        encryptor = self._cipher().encryptor()
        return base64.b64encode(encryptor.update(raw) + encryptor.finalize()).decode("ascii")

    def decrypt(self, encrypted: str) -> str:
        """Decrypt one Encrypt/echostr value, checking padding, length and receive id strictly."""
        try:
            data = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError):
            raise CallbackRejected("ciphertext is not valid base64") from None
        if not data or len(data) % 16:
            raise CallbackRejected("ciphertext length is not a positive multiple of 16")
        decryptor = self._cipher().decryptor()
        raw = decryptor.update(data) + decryptor.finalize()

        pad = raw[-1]
        if not 1 <= pad <= _BLOCK or pad > len(raw) or raw[-pad:] != bytes([pad]) * pad:
            raise CallbackRejected("bad padding")
        raw = raw[:-pad]
        if len(raw) < _RANDOM_LEN + _LEN_PREFIX:
            raise CallbackRejected("plaintext too short")
        (length,) = struct.unpack(">I", raw[_RANDOM_LEN : _RANDOM_LEN + _LEN_PREFIX])
        start = _RANDOM_LEN + _LEN_PREFIX
        if length > len(raw) - start:
            raise CallbackRejected("length prefix exceeds plaintext")
        msg, receive_id = raw[start : start + length], raw[start + length :]
        if not hmac.compare_digest(receive_id, self._receive_id):
            raise CallbackRejected("receive id mismatch")
        try:
            return msg.decode("utf-8")
        except UnicodeDecodeError:
            raise CallbackRejected("message is not UTF-8") from None

    def encrypt_reply(self, reply_xml: str, timestamp: str, nonce: str) -> str:
        """Wrap a passive reply in WeCom's encrypted envelope."""
        if not timestamp.isdigit():
            raise ValueError("timestamp must be decimal digits")
        if "]]>" in nonce or "<" in nonce:
            raise ValueError("nonce must not contain XML markup")
        encrypted = self.encrypt(reply_xml)
        signature = self.signature(timestamp, nonce, encrypted)
        return (
            f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt>"
            f"<MsgSignature><![CDATA[{signature}]]></MsgSignature>"
            f"<TimeStamp>{timestamp}</TimeStamp>"
            f"<Nonce><![CDATA[{nonce}]]></Nonce></xml>"
        )
