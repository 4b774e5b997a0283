"""WeCom callback crypto (WXBizMsgCrypt) and callback parsing.

The official vectors come from Tencent's WXBizMsgCrypt samples (Python/C#/Java/PHP
"Sample" files, whose comments carry the same GET verification request and encrypted
POST body, and the WeCom "加解密方案说明" walkthrough that decrypts that body).
"""

from __future__ import annotations

import base64
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bot.wecom.callback import parse_callback
from bot.wecom.crypto import CallbackRejected, WeComCrypto, parse_xml
from tests.fakes.wecom_api import card_event_xml, make_callback, text_message_xml

TOKEN = "QDG6eK"
CORP_ID = "wx5823bf96d3bd56c7"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"

# GET /cgi-bin/wxpush?msg_signature=...&timestamp=...&nonce=...&echostr=... (URL-decoded)
VERIFY_SIGNATURE = "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3"
VERIFY_TIMESTAMP = "1409659589"
VERIFY_NONCE = "263014780"
VERIFY_ECHOSTR = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
VERIFY_PLAINTEXT = "1616140317555161061"

POST_SIGNATURE = "477715d11cdb4164915debcba66cb864d751f3e6"
POST_TIMESTAMP = "1409659813"
POST_NONCE = "1372623149"
POST_ENCRYPT = (
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/"
    "sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJ"
    "YuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUc"
    "allcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5P"
    "l/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q=="
)
POST_BODY = (
    f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><Encrypt><![CDATA[{POST_ENCRYPT}]]></Encrypt>"
    "<AgentID><![CDATA[218]]></AgentID></xml>"
)
POST_PLAINTEXT = (
    "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n"
    "<FromUserName><![CDATA[mycreate]]></FromUserName>\n"
    "<CreateTime>1409659813</CreateTime>\n"
    "<MsgType><![CDATA[text]]></MsgType>\n"
    "<Content><![CDATA[hello]]></Content>\n"
    "<MsgId>4561255354251345929</MsgId>\n"
    "<AgentID>218</AgentID>\n"
    "</xml>"
)


@pytest.fixture
def crypto() -> WeComCrypto:
    return WeComCrypto(TOKEN, AES_KEY, CORP_ID)


def encrypt_raw(raw: bytes) -> str:
    """AES-256-CBC over hand-made (already padded) plaintext, with WeCom's key and IV."""
    key = base64.b64decode(AES_KEY + "=")
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(raw) + encryptor.finalize()).decode("ascii")


def framed(msg: bytes, receive_id: bytes = CORP_ID.encode(), *, length: int | None = None) -> bytes:
    return b"r" * 16 + struct.pack(">I", len(msg) if length is None else length) + msg + receive_id


def pkcs7_32(raw: bytes) -> bytes:
    pad = 32 - len(raw) % 32
    return raw + bytes([pad]) * pad


# ---------------------------------------------------------------- official vectors


def test_official_url_verification_vector_returns_echo_plaintext(crypto: WeComCrypto) -> None:
    echo = crypto.verify_url(VERIFY_SIGNATURE, VERIFY_TIMESTAMP, VERIFY_NONCE, VERIFY_ECHOSTR)
    assert echo == VERIFY_PLAINTEXT


def test_official_post_vector_signature_matches(crypto: WeComCrypto) -> None:
    assert crypto.signature(POST_TIMESTAMP, POST_NONCE, POST_ENCRYPT) == POST_SIGNATURE


def test_official_post_vector_decrypts_to_sample_message(crypto: WeComCrypto) -> None:
    plaintext = crypto.decrypt_callback(POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE, POST_BODY)
    assert plaintext == POST_PLAINTEXT


def test_official_post_vector_parses_as_text_message(crypto: WeComCrypto) -> None:
    inbound = parse_callback(crypto.decrypt_callback(POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE, POST_BODY))
    assert (inbound.kind, inbound.from_user, inbound.content, inbound.agent_id) == ("text", "mycreate", "hello", 218)
    assert inbound.dedup_key == "4561255354251345929"


# ---------------------------------------------------------------- round trips


def test_encrypt_decrypt_round_trip_keeps_unicode(crypto: WeComCrypto) -> None:
    message = "<xml><Content><![CDATA[第3项 督办事项已完成 ✅]]></Content></xml>"
    assert crypto.decrypt(crypto.encrypt(message)) == message


def test_encrypt_uses_wecom_layout_padded_to_32_bytes(crypto: WeComCrypto) -> None:
    encrypted = crypto.encrypt("hello", random16=b"0123456789abcdef")
    key = base64.b64decode(AES_KEY + "=")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    raw = decryptor.update(base64.b64decode(encrypted)) + decryptor.finalize()
    assert len(raw) % 32 == 0
    assert raw == pkcs7_32(b"0123456789abcdef" + struct.pack(">I", 5) + b"hello" + CORP_ID.encode())


def test_encrypt_reply_envelope_verifies_and_decrypts(crypto: WeComCrypto) -> None:
    envelope = crypto.encrypt_reply("<xml><Content>ok</Content></xml>", "1409659813", "1372623149")
    root = parse_xml(envelope)
    signature, timestamp, nonce = (root.findtext(tag) or "" for tag in ("MsgSignature", "TimeStamp", "Nonce"))
    assert crypto.decrypt_callback(signature, timestamp, nonce, envelope) == "<xml><Content>ok</Content></xml>"


def test_make_callback_round_trips_through_decrypt_and_parse(crypto: WeComCrypto) -> None:
    inner = text_message_xml(CORP_ID, "zhangsan", "已完成", "1001", 1000002, 1700000000)
    params, body = make_callback(crypto, inner)
    inbound = parse_callback(
        crypto.decrypt_callback(params["msg_signature"], params["timestamp"], params["nonce"], body)
    )
    assert (inbound.from_user, inbound.content, inbound.msg_id) == ("zhangsan", "已完成", "1001")


# ---------------------------------------------------------------- rejection


def test_key_that_is_not_32_bytes_is_refused() -> None:
    with pytest.raises(ValueError):
        WeComCrypto(TOKEN, AES_KEY[:-4], CORP_ID)


def test_forged_signature_is_rejected(crypto: WeComCrypto) -> None:
    forged = "0" * 40
    with pytest.raises(CallbackRejected):
        crypto.decrypt_callback(forged, POST_TIMESTAMP, POST_NONCE, POST_BODY)
    with pytest.raises(CallbackRejected):
        crypto.verify_url(forged, VERIFY_TIMESTAMP, VERIFY_NONCE, VERIFY_ECHOSTR)


def test_signature_over_other_timestamp_is_rejected(crypto: WeComCrypto) -> None:
    with pytest.raises(CallbackRejected):
        crypto.decrypt_callback(POST_SIGNATURE, "1409659814", POST_NONCE, POST_BODY)


def test_non_ascii_signature_is_rejected_not_crashing(crypto: WeComCrypto) -> None:
    with pytest.raises(CallbackRejected):
        crypto.verify_url("签名" * 20, VERIFY_TIMESTAMP, VERIFY_NONCE, VERIFY_ECHOSTR)


def test_pad_byte_zero_is_rejected(crypto: WeComCrypto) -> None:
    raw = framed(b"hello")
    raw += b"\x00" * (32 - len(raw) % 32)
    with pytest.raises(CallbackRejected):
        crypto.decrypt(encrypt_raw(raw))


def test_pad_value_above_32_is_rejected(crypto: WeComCrypto) -> None:
    raw = framed(b"x" * 19)  # 16 + 4 + 19 + 18 = 57 bytes
    raw += bytes([33]) * (96 - len(raw))  # 39 bytes of 0x21: fills to 96 but claims 33
    with pytest.raises(CallbackRejected):
        crypto.decrypt(encrypt_raw(raw))


def test_unequal_pad_bytes_are_rejected(crypto: WeComCrypto) -> None:
    raw = pkcs7_32(framed(b"hello"))
    pad = raw[-1]
    assert pad > 1
    tampered = raw[:-pad] + bytes([pad - 1]) + bytes([pad]) * (pad - 1)
    with pytest.raises(CallbackRejected):
        crypto.decrypt(encrypt_raw(tampered))


def test_correctly_padded_hand_made_plaintext_is_accepted(crypto: WeComCrypto) -> None:
    # Control for the padding tests above: the same construction, padded properly, decrypts.
    assert crypto.decrypt(encrypt_raw(pkcs7_32(framed(b"hello")))) == "hello"


def test_length_prefix_beyond_plaintext_is_rejected(crypto: WeComCrypto) -> None:
    with pytest.raises(CallbackRejected):
        crypto.decrypt(encrypt_raw(pkcs7_32(framed(b"hello", length=10_000))))


def test_wrong_receive_id_is_rejected(crypto: WeComCrypto) -> None:
    other = WeComCrypto(TOKEN, AES_KEY, "wwsomeothercorp")
    with pytest.raises(CallbackRejected):
        crypto.decrypt(other.encrypt("hello"))


def test_truncated_receive_id_is_rejected(crypto: WeComCrypto) -> None:
    with pytest.raises(CallbackRejected):
        crypto.decrypt(encrypt_raw(pkcs7_32(framed(b"hello", CORP_ID[:-1].encode()))))


@pytest.mark.parametrize(
    "encrypted",
    [
        "",
        "not base64 at all!",
        POST_ENCRYPT[:-10],  # truncated: bad base64 padding
        POST_ENCRYPT[:20],  # valid base64, 15 bytes: not a whole AES block
        base64.b64encode(b"\x00" * 17).decode(),  # not a multiple of 16
    ],
    ids=["empty", "garbage", "truncated", "short", "ragged"],
)
def test_malformed_ciphertext_is_rejected(crypto: WeComCrypto, encrypted: str) -> None:
    with pytest.raises(CallbackRejected):
        crypto.decrypt(encrypted)


def test_envelope_without_encrypt_is_rejected(crypto: WeComCrypto) -> None:
    with pytest.raises(CallbackRejected):
        crypto.decrypt_callback(POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE, "<xml><ToUserName>x</ToUserName></xml>")


def test_envelope_with_doctype_is_rejected(crypto: WeComCrypto) -> None:
    body = '<?xml version="1.0"?><!DOCTYPE xml [<!ELEMENT xml ANY>]>' + POST_BODY
    with pytest.raises(CallbackRejected):
        crypto.decrypt_callback(POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE, body)


def test_entity_expansion_is_rejected() -> None:
    bomb = '<!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]><xml><Encrypt>&b;</Encrypt></xml>'
    with pytest.raises(CallbackRejected):
        parse_xml(bomb)


def test_external_entity_is_rejected() -> None:
    with pytest.raises(CallbackRejected):
        parse_xml('<!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml>&x;</xml>')


def test_malformed_xml_is_rejected() -> None:
    with pytest.raises(CallbackRejected):
        parse_xml("<xml><Encrypt>abc</xml>")


def test_doctype_text_inside_cdata_is_just_text() -> None:
    inner = text_message_xml(CORP_ID, "zhangsan", "<!DOCTYPE html> 是网页", "7", 1000002, 1700000000)
    assert parse_callback(inner).content == "<!DOCTYPE html> 是网页"


# ---------------------------------------------------------------- callback parsing


def test_card_event_parses_button_key_task_and_response_code() -> None:
    inbound = parse_callback(card_event_xml(CORP_ID, "lisi", "done:42", "task-42", "rc-1", 1000002, 1700000001))
    assert inbound.kind == "event"
    assert (inbound.event, inbound.event_key, inbound.task_id, inbound.response_code) == (
        "template_card_event",
        "done:42",
        "task-42",
        "rc-1",
    )
    assert inbound.msg_id is None
    assert inbound.dedup_key == "lisi:1700000001:template_card_event:done:42:task-42"


def test_retried_card_event_has_the_same_dedup_key() -> None:
    xml = card_event_xml(CORP_ID, "lisi", "done:42", "task-42", "rc-1", 1000002, 1700000001)
    assert parse_callback(xml).dedup_key == parse_callback(xml).dedup_key


def test_enter_agent_event_without_event_key() -> None:
    xml = (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[wangwu]]></FromUserName>"
        "<CreateTime>1700000002</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[enter_agent]]></Event><EventKey><![CDATA[]]></EventKey><AgentID>1000002</AgentID></xml>"
    )
    inbound = parse_callback(xml)
    assert (inbound.event, inbound.event_key, inbound.dedup_key) == (
        "enter_agent",
        None,
        "wangwu:1700000002:enter_agent::",
    )


def test_image_message_carries_media_id() -> None:
    xml = (
        "<xml><ToUserName>c</ToUserName><FromUserName>u</FromUserName><CreateTime>1</CreateTime>"
        "<MsgType>image</MsgType><PicUrl>http://x</PicUrl><MediaId>m-1</MediaId><MsgId>99</MsgId>"
        "<AgentID>1</AgentID></xml>"
    )
    inbound = parse_callback(xml)
    assert (inbound.kind, inbound.media_id, inbound.content, inbound.dedup_key) == ("image", "m-1", None, "99")


def test_unknown_message_type_is_other() -> None:
    xml = (
        "<xml><FromUserName>u</FromUserName><CreateTime>1</CreateTime><MsgType>location</MsgType><MsgId>5</MsgId></xml>"
    )
    assert parse_callback(xml).kind == "other"


def test_callback_without_sender_is_rejected() -> None:
    with pytest.raises(CallbackRejected):
        parse_callback("<xml><MsgType>text</MsgType><Content>hi</Content></xml>")
