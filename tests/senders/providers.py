"""Requests signed by the providers' own libraries, which hookbox must accept.

Twilio's `RequestValidator` (the `twilio` package) and the Standard Webhooks reference library
(`standardwebhooks`) sign; Meta publishes no library, so its HMAC is the standard library's. Also
checks the other way round: what `hookbox sign --standard` prints verifies with the official
library. Run by tests/senders/run.sh against a server configured with the variables it exports.

usage: providers.py BASE_URL HOOKBOX_BINARY
"""

import hashlib
import hmac
import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone

from standardwebhooks.webhooks import Webhook
from twilio.request_validator import RequestValidator

BASE, BINARY = sys.argv[1], sys.argv[2]
ENV = os.environ


def post(path, body, headers):
    request = urllib.request.Request(BASE + path, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers.get("Content-Type"), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type"), error.read()


def expect(what, got, wanted):
    if got != wanted:
        sys.exit(f"providers: {what}: got {got!r}, wanted {wanted!r}")
    print(f"providers: {what}: ok")


def message(message_id):
    return json.dumps({"message_id": message_id, "from": "+14155550100", "to": "+14155550199",
                       "ts": "2025-01-15T10:00:00Z", "text": "signed by the providers' code"})


# Twilio: its documented example first, then a WhatsApp message as Twilio posts it.
validator = RequestValidator("12345")
expect("twilio documented vector", validator.compute_signature(
    "https://mycompany.com/myapp.php?foo=1&bar=2",
    {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
     "From": "+12349013030", "To": "+18005551212"}), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
params = {"MessageSid": "SMproviders0001", "SmsStatus": "received", "Body": "Hi + bye & 100%",
          "From": "whatsapp:+14155550100", "To": "whatsapp:+14155238886", "NumMedia": "0"}
path = "/webhook/twilio?account=main"
signature = RequestValidator(ENV["HOOKBOX_TWILIO_AUTH_TOKEN"]).compute_signature(
    ENV["HOOKBOX_PUBLIC_URL"] + path, params)
status, content_type, body = post(path, urllib.parse.urlencode(params).encode(), {
    "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature})
expect("twilio RequestValidator signature accepted", (status, content_type), (200, "text/xml"))
status, _, _ = post(path, urllib.parse.urlencode(params).encode(), {
    "Content-Type": "application/x-www-form-urlencoded",
    "X-Twilio-Signature": RequestValidator("wrong").compute_signature(
        ENV["HOOKBOX_PUBLIC_URL"] + path, params)})
expect("twilio signature under another token refused", status, 403)

# Standard Webhooks: the reference library signs; then it verifies what `hookbox sign` prints.
webhook = Webhook(ENV["HOOKBOX_STANDARD_WEBHOOKS_SECRET"])
payload = message("providers-standard-1")
now = datetime.now(timezone.utc)
headers = {"Content-Type": "application/json", "webhook-id": "msg_providers_1",
           "webhook-timestamp": str(int(now.timestamp())),
           "webhook-signature": webhook.sign("msg_providers_1", now, payload)}
status, _, body = post("/webhook", payload.encode(), headers)
expect("standardwebhooks signature accepted", (status, json.loads(body)), (200, {"status": "ok"}))
printed = subprocess.run([BINARY, "sign", "--standard", "-"], input=payload.encode(),
                         capture_output=True, check=True).stdout.decode()
signed = dict(line.split(": ", 1) for line in printed.strip().splitlines())
webhook.verify(payload, signed)  # raises WebhookVerificationError on a mismatch
print("providers: `hookbox sign --standard` verifies with standardwebhooks: ok")

# WhatsApp Cloud API: Meta's X-Hub-Signature-256 (HMAC-SHA256 of the raw body).
notification = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
    {"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "1"},
        "messages": [{"from": "16505551234", "id": "wamid.providers1", "timestamp": "1749416383",
                      "type": "text", "text": {"body": "hello"}}]}}]}]}).encode()
digest = hmac.new(ENV["HOOKBOX_WHATSAPP_APP_SECRET"].encode(), notification, hashlib.sha256)
status, _, _ = post("/webhook/whatsapp", notification, {
    "Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + digest.hexdigest()})
expect("whatsapp X-Hub-Signature-256 accepted", status, 200)

with urllib.request.urlopen(BASE + "/messages?limit=100", timeout=10) as answer:
    stored = {row["message_id"]: row for row in json.load(answer)["data"]}
for message_id in ["SMproviders0001", "providers-standard-1", "wamid.providers1"]:
    expect(f"{message_id} stored", message_id in stored, True)
expect("twilio text kept as sent", stored["SMproviders0001"]["text"], "Hi + bye & 100%")
expect("twilio whatsapp: prefix dropped", stored["SMproviders0001"]["from"], "+14155550100")
