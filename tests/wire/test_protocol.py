"""The API 3.0 wire protocol against a real ``vodimg serve``: the official SDK with every signature
method and HTTP method, and hand-written requests for every error path of the protocol layer."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.vod.v20180717 import models

from tests.e2e.server import new_key
from tests.wire.raw import ACTION, answer, error_code, legacy_get, legacy_post, tc3_post

SIGNATURES = [(sign, method) for sign in ("TC3-HMAC-SHA256", "HmacSHA1", "HmacSHA256")
              for method in ("POST", "GET")]
CONFIGURE = {"EnhanceConfig": {"SharpEnhance": {"Switch": "ON", "Intensity": 0.5},
                               "Denoise": {"Switch": "ON", "Type": "strong"}},
             "EncodeConfig": {"Format": "WebP", "Quality": 80}}


def request(model_name: str, params: dict):
    model = getattr(models, model_name)()
    model.from_json_string(json.dumps(params))
    return model


def sdk_error(call) -> TencentCloudSDKException:
    with pytest.raises(TencentCloudSDKException) as caught:
        call()
    return caught.value


# -- the official SDK: every signature method, POST and GET ---------------------------------------

@pytest.mark.parametrize("sign_method,req_method", SIGNATURES)
def test_sdk_creates_and_reads_nested_parameters_with_every_signature(server, sign_method, req_method):
    client = server.vod(sign_method=sign_method, req_method=req_method)
    name = f"名前 {sign_method} {req_method} a&b=c?d_e+f%"
    created = client.CreateProcessImageAsyncTemplate(request("CreateProcessImageAsyncTemplateRequest", {
        "Name": name, "Comment": "x_y.z", "ProcessImageConfigure": CONFIGURE}))
    assert created.Definition >= 10000 and created.RequestId
    described = client.DescribeProcessImageAsyncTemplates(request(
        "DescribeProcessImageAsyncTemplatesRequest", {"Definitions": [created.Definition], "Limit": 5}))
    assert described.TotalCount == 1
    item = json.loads(described.ProcessImageAsyncTemplateSet[0].to_json_string())
    assert (item["Name"], item["Comment"], item["Type"]) == (name, "x_y.z", "Custom")
    enhance = item["ProcessImageConfigure"]["EnhanceConfig"]
    assert enhance["SharpEnhance"] == {"Switch": "ON", "Intensity": 0.5}
    assert enhance["Denoise"] == {"Switch": "ON", "Type": "strong"}
    assert item["ProcessImageConfigure"]["EncodeConfig"] == {"Format": "WebP", "Quality": 80}


@pytest.mark.parametrize("sign_method,req_method", SIGNATURES)
def test_sdk_wrong_key_is_signature_failure(server, sign_method, req_method):
    client = server.vod(secret_key="x" * 32, sign_method=sign_method, req_method=req_method)
    error = sdk_error(lambda: client.DescribeProcessImageAsyncTemplates(
        request("DescribeProcessImageAsyncTemplatesRequest", {})))
    assert error.code == "AuthFailure.SignatureFailure"
    assert error.requestId


@pytest.mark.parametrize("sign_method", ["TC3-HMAC-SHA256", "HmacSHA1"])
def test_sdk_unknown_secret_id(server, sign_method):
    secret_id, secret_key = new_key()
    client = server.vod(secret_id=secret_id, secret_key=secret_key, sign_method=sign_method)
    error = sdk_error(lambda: client.DescribeProcessImageAsyncTemplates(
        request("DescribeProcessImageAsyncTemplatesRequest", {})))
    assert error.code == "AuthFailure.SecretIdNotFound"


def test_sdk_unknown_action_and_wrong_version(server):
    bogus = sdk_error(lambda: server.common().call_json("DescribeInstances", {}))
    assert (bogus.code, bogus.message) == ("InvalidAction", "The action 'DescribeInstances' does not exist.")
    unsupported = sdk_error(lambda: server.common().call_json("DescribeStorageData", {}))
    assert unsupported.code == "InvalidAction"
    assert "VOD action that this service does not support" in unsupported.message
    old = server.common(version="2017-03-12")
    assert sdk_error(lambda: old.call_json(ACTION, {})).code == "NoSuchVersion"


def test_sdk_unsigned_payload(server):
    client = server.common(unsigned=True)
    assert client.call_json(ACTION, {"Limit": 1})["Response"]["TotalCount"] >= 1


def test_sdk_sees_provider_errors_with_their_codes(server):
    # Errors raised above the wire layer reach the SDK as exceptions (exact Content-Type).
    client = server.common()
    assert sdk_error(lambda: client.call_json(ACTION, {"Limit": "ten"})).code == "InvalidParameter"
    assert sdk_error(lambda: client.call_json(ACTION, {"Nope": 1})).code == "UnknownParameter"


# -- hand-written TC3 requests --------------------------------------------------------------------

def test_hand_written_client_signing_charset_and_action(server):
    response = tc3_post(server, b'{"Limit": 2}', content_type="application/json; charset=utf-8",
                        sign_action=True)
    body = answer(response)
    assert "Error" not in body and len(body["ProcessImageAsyncTemplateSet"]) <= 2


def test_documented_lowercased_header_values_are_accepted(server):
    body = answer(tc3_post(server, b"{}", content_type="application/json; charset=UTF-8",
                           sign_action=True, lowercase_values=True))
    assert "Error" not in body


def test_unsigned_payload_ignores_the_body_hash(server):
    response = tc3_post(server, b'{"Limit": 1}', unsigned_payload=True, signed_body=b"anything")
    assert error_code(response) is None


@pytest.mark.parametrize("body", [b"{not json", b'{"Limit": 1', b"\xff\xfe", b"[1, 2]", b'"text"', b"42", b"null"])
def test_body_that_is_not_a_json_object(server, body):
    response = tc3_post(server, body)
    assert error_code(response) == "InvalidParameter"
    assert "JSON" in answer(response)["Error"]["Message"]


def test_body_over_10_mb_is_refused_and_connection_answers(server):
    body = b'{"Name": "' + b"a" * (20 * 1024 * 1024) + b'"}'
    response = tc3_post(server, body, unsigned_payload=True)
    assert error_code(response) == "RequestSizeLimitExceeded"


def test_chunked_body_over_10_mb_is_refused(server):
    def chunks():
        for _ in range(21):
            yield b" " * (1024 * 1024)
    headers = {"Content-Type": "application/json", "X-TC-Action": ACTION, "X-TC-Version": "2018-07-17",
               "Authorization": "TC3-HMAC-SHA256 Credential=a/b/vod/tc3_request, SignedHeaders=content-type;host, Signature=0"}
    response = httpx.post(server.url, content=chunks(), headers=headers, timeout=60)
    assert error_code(response) == "RequestSizeLimitExceeded"


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "multipart/form-data; boundary=x", ""])
def test_wrong_content_type_for_tc3_post(server, content_type):
    response = tc3_post(server, b"{}", content_type=content_type)
    assert error_code(response) == "InvalidParameter"
    assert "Content-Type" in answer(response)["Error"]["Message"]


def test_missing_content_type(server):
    response = httpx.post(server.url, content=b"{}", headers={
        "X-TC-Action": ACTION, "X-TC-Version": "2018-07-17", "Authorization": "TC3-HMAC-SHA256 x"})
    assert error_code(response) == "InvalidParameter"


@pytest.mark.parametrize("authorization", [
    "",
    "Basic dXNlcjpwYXNz",
    "TC3-HMAC-SHA256",
    "TC3-HMAC-SHA256 Credential=AKID/2026-01-01/vod/tc3_request, Signature=abc",
    "TC3-HMAC-SHA256 Credential=AKID/2026-01-01/tc3_request, SignedHeaders=content-type;host, Signature=abc",
    "TC3-HMAC-SHA256 Credential=AKID/2026-01-01/cvm/tc3_request, SignedHeaders=content-type;host, Signature=abc",
    "TC3-HMAC-SHA256 Credential=AKID/2026-01-01/vod/tc3_request, SignedHeaders=host, Signature=abc",
    "SKIP",
])
def test_malformed_authorization(server, authorization):
    assert error_code(tc3_post(server, b"{}", authorization=authorization)) == "AuthFailure.InvalidAuthorization"


def test_missing_authorization(server):
    response = httpx.post(server.url, content=b"{}", headers={
        "Content-Type": "application/json", "X-TC-Action": ACTION, "X-TC-Version": "2018-07-17",
        "X-TC-Timestamp": str(int(time.time()))})
    assert error_code(response) == "AuthFailure.InvalidAuthorization"


@pytest.mark.parametrize("offset", [-400, 400, -86400])
def test_timestamp_outside_300_seconds(server, offset):
    assert error_code(tc3_post(server, timestamp=int(time.time()) + offset)) == "AuthFailure.SignatureExpire"


@pytest.mark.parametrize("offset", [-250, 250])
def test_timestamp_inside_300_seconds(server, offset):
    assert error_code(tc3_post(server, timestamp=int(time.time()) + offset)) is None


def test_missing_or_bad_timestamp(server):
    assert error_code(tc3_post(server, extra_headers={"X-TC-Timestamp": ""})) == "MissingParameter"
    assert error_code(tc3_post(server, extra_headers={"X-TC-Timestamp": "soon"})) == "InvalidParameter"


def test_scope_date_must_be_the_timestamps_utc_date(server):
    yesterday = (datetime.now(timezone.utc) - timedelta(days=1)).strftime("%Y-%m-%d")
    response = tc3_post(server, date=yesterday)
    assert error_code(response) == "AuthFailure.SignatureFailure"
    assert "date" in answer(response)["Error"]["Message"]


def test_wrong_key_and_tampered_body(server):
    assert error_code(tc3_post(server, secret_key="y" * 32)) == "AuthFailure.SignatureFailure"
    tampered = tc3_post(server, b'{"Limit": 100}', signed_body=b'{"Limit": 1}')
    assert error_code(tampered) == "AuthFailure.SignatureFailure"


def test_unsigned_action_header_can_not_be_swapped_when_signed(server):
    # The action is signed here; sending another one breaks the signature.
    response = tc3_post(server, sign_action=True, extra_headers={"X-TC-Action": "DeleteProcessImageAsyncTemplate"})
    assert error_code(response) == "AuthFailure.SignatureFailure"


def test_unknown_secret_id_raw(server):
    secret_id, secret_key = new_key()
    assert error_code(tc3_post(server, secret_id=secret_id, secret_key=secret_key)) == "AuthFailure.SecretIdNotFound"


def test_version_and_action_checks(server):
    assert error_code(tc3_post(server, version="2019-01-01")) == "NoSuchVersion"
    assert error_code(tc3_post(server, version="")) == "MissingParameter"
    assert error_code(tc3_post(server, action="DescribeCdnDomains")) == "InvalidAction"
    assert error_code(tc3_post(server, action="")) == "MissingParameter"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND"])
def test_unsupported_http_method(server, method):
    response = httpx.request(method, server.url, content=b"{}", timeout=10)
    assert error_code(response) == "UnsupportedProtocol"


def test_other_paths_are_refused(server):
    assert error_code(httpx.post(server.url + "v2/api", content=b"{}", timeout=10)) == "UnsupportedProtocol"


# -- the older signatures, hand-written -----------------------------------------------------------

@pytest.mark.parametrize("sign_method", ["HmacSHA1", "HmacSHA256"])
def test_legacy_get_and_post_with_nested_parameters(server, sign_method):
    params = {"Definitions.0": "10", "Definitions.1": "20", "Limit": "3"}
    for send in (legacy_get, legacy_post):
        body = answer(send(server, params, sign_method=sign_method))
        assert "Error" not in body, body


def test_legacy_errors(server):
    assert error_code(legacy_get(server, {}, secret_key="z" * 32)) == "AuthFailure.SignatureFailure"
    assert error_code(legacy_get(server, {}, timestamp=int(time.time()) - 301)) == "AuthFailure.SignatureExpire"
    assert error_code(legacy_get(server, {}, sign_method="HmacMD5")) == "InvalidParameterValue"
    assert error_code(legacy_get(server, {"Definitions.1": "3"})) == "InvalidParameter"  # gap in a list
    assert error_code(legacy_post(server, {".".join(["A"] * 5000): "1"})) == "InvalidParameter"  # too deep
    assert error_code(legacy_get(server, {"Limit": "x"})) == "InvalidParameter"
    assert error_code(legacy_get(server, {}, action="NoSuch")) == "InvalidAction"


def test_get_or_form_without_any_signature(server):
    response = httpx.get(server.url, params={"Action": ACTION, "Version": "2018-07-17"}, timeout=10)
    assert error_code(response) == "AuthFailure.InvalidAuthorization"
    form = httpx.post(server.url, data={"Action": ACTION, "Version": "2018-07-17", "SecretId": server.secret_id})
    assert error_code(form) == "AuthFailure.InvalidAuthorization"
