#!/usr/bin/env python3
"""An aklwngt device client generated at run time by zeep from wsdl/aklwngt.wsdl.

It proves that a standard SOAP toolkit can talk to the server from the WSDL alone.

Offline, it writes the request of every operation as zeep builds it, for the schema tests to validate:

    zeep_client.py --offline wsdl/aklwngt.wsdl OUT_DIR [--replies tests/fixtures/wsdl]

With --replies, it also parses every response envelope of that directory written with the 2001 XML Schema
namespaces (the ones zeep sends, and so the ones the server answers it in), as zeep would parse a reply.

Live, it runs one whole device session against a running server and prints a one-line summary:

    zeep_client.py --url https://127.0.0.1:13292/wsdl --insecure
    zeep_client.py --url https://127.0.0.1:13292/wsdl --cafile server.pem
    zeep_client.py --url ... --strict-wsdl   # no reply rewriting: server with string_value_type = "string"

It exits non-zero on any oError, SOAP Fault, transport error or unexpected command.

Requires: pip install zeep
"""

import argparse
import datetime
import hashlib
import os
import secrets
import sys
import urllib.parse

try:
    import zeep
    from lxml import etree
    from zeep import xsd
    from zeep.helpers import serialize_object
except ImportError:  # pragma: no cover - reported to the caller
    sys.stderr.write("zeep is not installed: pip install zeep\n")
    sys.exit(3)

AKLWNGT_NS = "http://tempuri.org/aklwngt.xsd"
PARAM_NS = "http://tempuri.org/param.xsd"
SOAP_ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
XSI_2001 = "http://www.w3.org/2001/XMLSchema-instance"
BINDING = "{%s}aklwngt" % AKLWNGT_NS
PROTOCOL_VERSION = 0x00010000

SRV_NO_COMMANDS = 0
SRV_SETTINGS_GET = 1
SRV_SETTINGS_PUT = 2
SRV_POLICY_PUT = 3
SRV_SUBSCRIPTIONS_PUT = 4
SRV_APPINFO_GET = 5
SRV_APPSTATE_GET = 6
MAX_COMMANDS = 20

UTC = datetime.timezone.utc


XSD_NAMESPACES = ("http://www.w3.org/2001/XMLSchema", "http://www.w3.org/1999/XMLSchema")
XSI_TYPES = ["{%s}type" % ns for ns in (XSI_2001, "http://www.w3.org/1999/XMLSchema-instance")]


def read_wstring_as_string(envelope):
    """Renames xsi:type="xsd:wstring" to xsd:string throughout envelope, in place.

    The server types parameter string values as xsd:wstring because deployed devices require it, but
    wstring is no XML Schema type: zeep refuses the whole reply when it meets it (LookupError), as would
    any toolkit that resolves xsi:type strictly. A client built from the WSDL must read it as xsd:string.
    """
    for element in envelope.iter():
        for attribute in XSI_TYPES:
            value = element.get(attribute)
            if not value or not value.strip().endswith("wstring"):
                continue
            prefix, _, local = value.strip().rpartition(":")
            if local == "wstring" and element.nsmap.get(prefix or None) in XSD_NAMESPACES:
                element.set(attribute, (prefix + ":" if prefix else "") + "string")
    return envelope


class WstringAsString(zeep.Plugin):
    """Applies read_wstring_as_string to every reply before zeep parses it."""

    def ingress(self, envelope, http_headers, operation):
        return read_wstring_as_string(envelope), http_headers


class ProtocolFailure(Exception):
    """The server answered, but not as the protocol says it must."""


class Device:
    """Builds the protocol's values with the types the WSDL declares."""

    def __init__(self, client):
        self.client = client
        self.t = client.type_factory(AKLWNGT_NS)
        self.p = client.type_factory(PARAM_NS)
        self.params_type = client.get_type("{%s}params" % PARAM_NS)
        self.array_type = client.get_type("{%s}arrayvalue" % PARAM_NS)

    # --- param:params -------------------------------------------------------------------------
    def typed(self, value):
        """A param value's data: xsd:anyType carrying the xsi:type of the Python value."""
        if isinstance(value, bool):
            return xsd.AnyObject(xsd.Boolean(), value)
        if isinstance(value, int):
            if -(2**31) <= value < 2**31:
                return xsd.AnyObject(xsd.Int(), value)
            return xsd.AnyObject(xsd.Long(), value)
        if isinstance(value, float):
            return xsd.AnyObject(xsd.Double(), value)
        if isinstance(value, datetime.datetime):
            return xsd.AnyObject(xsd.DateTime(), value)
        if isinstance(value, datetime.date):
            return xsd.AnyObject(xsd.Date(), value)
        if isinstance(value, bytes):
            # The protocol's writers append one 0x00 byte to binary values; readers drop it.
            return xsd.AnyObject(xsd.Base64Binary(), value + b"\x00")
        if isinstance(value, str):
            return xsd.AnyObject(xsd.String(), value)
        if isinstance(value, dict):
            return xsd.AnyObject(self.params_type, self.params(value))
        if isinstance(value, list):
            items = [self.p.value(data=self.typed(v)) for v in value]
            return xsd.AnyObject(self.array_type, self.p.arrayvalue(item=items))
        raise TypeError("no param type for %r" % (value,))

    def params(self, tree):
        entries = [self.p.entry(name=name, value=self.p.value(data=self.typed(v))) for name, v in tree.items()]
        return self.p.params(node=self.p.node(item=entries))

    # --- command payloads ---------------------------------------------------------------------
    def app_info(self, hash_info, group):
        now = datetime.datetime(2024, 5, 1, 8, 30, 0, tzinfo=UTC)
        key = self.t["LicKeyInfo"](
            keyType=1,
            keyProdSuiteID=1102,
            keyAppID=1404,
            keyInstallDate=now,
            keyExpirationDate=now + datetime.timedelta(days=365),
            keyLicPeriod=365,
            keyLicCount=50,
            keySerial="0038-000451-00F2A1B3",
            keyMajVer="6.0",
            keyProdName="Mobile Security Enterprise",
        )
        return self.t["CmdAppInfo"](
            hash=hash_info,
            prodInfo=self.t["ProdInfo"](
                **{
                    "product-name": "KMS",
                    "product-version": "6.0.0.0",
                    "installTime": now,
                    "dn": "Mobile Security 6.0",
                    "prodVersion": "6.0.1403.0",
                }
            ),
            licenseInfo=self.t["LicenseInfo"](keyCurrent=key),
            devInfo=self.t["DevInfo"](
                **{
                    "presumedName": "Телефон zeep",
                    "presumedGroup": group,
                    "os-type": 1,
                    "os-ver-major": 5,
                    "os-ver-minor": 2,
                    "os-manufacturer": "HTC",
                    "os-name": "Windows Mobile",
                    "os-ver": "5.2.1236",
                    "memory": 134217728,
                    "processor-family": "ARM",
                    "system-name": "zeep phone",
                    "system-type": "PocketPC",
                }
            ),
        )

    def app_state(self, hash_state):
        return self.t["CmdAppState"](
            hash=hash_state,
            stateApp=1,
            stateRTP=7,
            lastFullScan=datetime.datetime(2024, 4, 30, 22, 0, 0, tzinfo=UTC),
            lastUpdateTime=datetime.datetime(2024, 5, 1, 6, 15, 0, tzinfo=UTC),
            basesDate=datetime.datetime(2024, 5, 1, 0, 0, 0, tzinfo=UTC),
            basesInstallDate=datetime.datetime(2024, 5, 1, 6, 15, 30, tzinfo=UTC),
            basesRecords=243117,
        )

    def settings(self, hash_stgs):
        tree = {
            "SyncPeriod": 900,
            "PublishEvents": True,
            "Server": "admin.example.org",
            "QuotaBytes": 8589934592,
            "Ratio": 0.25,
            "BasesDay": datetime.date(2024, 5, 1),
            "LastScan": datetime.datetime(2024, 4, 30, 22, 0, 0, tzinfo=UTC),
            "Certificate": b"\x30\x82\x01\x0a",
            "Antivirus": {
                "Mode": 2,
                "Excluded": ["\\Storage Card\\Temp", "\\My Documents\\Архив"],
                "Schedule": {"Hour": 3, "Days": [1, 5]},
            },
        }
        return self.t["CmdParAndHash"](hash=hash_stgs, parameters=self.params(tree))

    def hash_ack(self, digest):
        return self.t["CmdHash"](hash=digest)

    def error(self, code, message):
        return self.t["CmdError"](
            oError=self.t["param-error"](code=code, module="KLSTD", file="settings.cpp", line=120, message=message)
        )

    def events(self, prefix):
        def event(n, severity, event_type, **extra):
            body = {
                "severity": severity,
                "product-name": "KMS",
                "product-version": "6.0.0.0",
                "event-type": event_type,
                "rise-time": datetime.datetime(2024, 5, 1, 9, 0, n, tzinfo=UTC),
            }
            body.update(extra)
            return self.t["event-info"](eventId="%s-%d" % (prefix, n), body=self.t["event-body"](**body))

        return self.t["event-info-array"](
            item=[
                event(
                    1,
                    4,
                    "GNRL_EV_VIRUS_FOUND",
                    **{
                        "event-type-display-name": "Обнаружен вирус",
                        "descr": "Virus EICAR-Test-File found",
                        "locid": 1001,
                        "rise-time-ms": 250,
                        "par2": "\\My Documents\\eicar.com",
                        "par5": "EICAR-Test-File",
                        "par6": "4f1c0a",
                    },
                ),
                event(2, 1, "KLPRCI_TaskState"),
            ]
        )


def digest(*parts):
    """A 16-byte item hash, as the device computes over what it holds."""
    h = hashlib.md5()
    for part in parts:
        h.update(part if isinstance(part, bytes) else repr(part).encode("utf-8"))
    return h.digest()


def sync_info(hashes):
    return {"hash-stgs": hashes[0], "hash-pol": hashes[1], "hash-sbsc": hashes[2], "hash-info": hashes[3], "hash-state": hashes[4]}


# ===================================================================================== offline


def offline(wsdl_path, out_dir, replies_dir):
    client = zeep.Client(wsdl_path)
    dev = Device(client)
    hashes = [bytes(range(16 * i, 16 * i + 16)) for i in range(5)]
    session = "Qm9vdHN0cmFwU2Vzc2lvbg"
    header = {"messDesc": {"RequestFlag": 1, "MessageId": 7}}
    messages = {
        "SessionBegin": ("SessionBegin", dict(szDeviceId="zeep-7f3a9c21", szPassword="c2VjcmV0", nProtocolVersion=PROTOCOL_VERSION)),
        "Heartbeat.sync": ("Heartbeat", dict(szSessionId=session, oMaySynchronize=sync_info(hashes), _soapheaders=header)),
        "Heartbeat.alive": ("Heartbeat", dict(szSessionId=session)),
        "PutResult.appinfo": ("PutResult", dict(szSessionId=session, result={"code": SRV_APPINFO_GET, "data": dev.app_info(hashes[3], "Sales/Moscow")})),
        "PutResult.appstate": ("PutResult", dict(szSessionId=session, result={"code": SRV_APPSTATE_GET, "data": dev.app_state(hashes[4])})),
        "PutResult.settings": ("PutResult", dict(szSessionId=session, result={"code": SRV_SETTINGS_GET, "data": dev.settings(hashes[0])})),
        "PutResult.policy-hash": ("PutResult", dict(szSessionId=session, result={"code": SRV_POLICY_PUT, "data": dev.hash_ack(hashes[1])})),
        "PutResult.error": ("PutResult", dict(szSessionId=session, result={"code": SRV_SETTINGS_GET, "data": dev.error(1186, "settings storage not found")})),
        "PutEvents": ("PutEvents", dict(szSessionId=session, oEventsInfoArray=dev.events("ev"))),
        "klft-GetFileInfo": ("klft-GetFileInfo", dict(szSessionId=session, fileName="bases/daily.avc")),
        "klft-GetNextFileChunk": ("klft-GetNextFileChunk", dict(szSessionId=session, fileName="bases/daily.avc", startFilePos=4294967296, neededSize=32768)),
        "SessionEnd": ("SessionEnd", dict(szSessionId=session)),
    }
    os.makedirs(out_dir, exist_ok=True)
    for name, (operation, kwargs) in messages.items():
        envelope = client.create_message(client.service, operation, **kwargs)
        with open(os.path.join(out_dir, name + ".xml"), "wb") as out:
            out.write(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8", pretty_print=True))
    parsed = parse_replies(client, replies_dir) if replies_dir else 0
    print("offline: %d requests written to %s, %d replies parsed" % (len(messages), out_dir, parsed))


def parse_replies(client, replies_dir):
    """Parses each 2001-namespace response envelope of replies_dir as zeep parses a server's reply."""
    binding = client.service._binding
    count = 0
    for name in sorted(os.listdir(replies_dir)):
        if not name.endswith(".xml"):
            continue
        envelope = etree.parse(os.path.join(replies_dir, name)).getroot()
        if XSI_2001 not in envelope.nsmap.values():
            continue
        body = envelope.find("{%s}Body" % SOAP_ENV_NS)
        first = body[0] if body is not None and len(body) else None
        if first is None:
            continue
        tag = etree.QName(first)
        if tag.namespace != AKLWNGT_NS or not tag.localname.endswith("Response"):
            continue
        operation = binding.get(tag.localname[: -len("Response")])
        reply = operation.process_reply(read_wstring_as_string(envelope))
        check_parsed_reply(name, tag.localname, reply.body)
        count += 1
    if count == 0:
        raise ProtocolFailure("no response envelope with 2001 namespaces in %s" % replies_dir)
    return count


def check_parsed_reply(name, element, body):
    """A reply that parsed into nothing means zeep silently dropped what the schema does not describe."""
    command = getattr(body, "oCommand", None) or getattr(body, "oNextCommand", None)
    if command is not None and command.code in (SRV_SETTINGS_PUT, SRV_POLICY_PUT, SRV_SUBSCRIPTIONS_PUT):
        expected = "CmdSubscriptions" if command.code == SRV_SUBSCRIPTIONS_PUT else "CmdPar"
        if command.data is None or type_name(command.data) != expected:
            raise ProtocolFailure("%s: %s command %d: data not parsed as %s" % (name, element, command.code, expected))
    if element in ("SessionBeginResponse",) and body.oError is None and not body.szSessionId:
        raise ProtocolFailure("%s: no session id" % name)


def type_name(value):
    return getattr(getattr(value, "_xsd_type", None), "name", None)


# ======================================================================================== live


def live(url, verify, strict=False):
    import requests
    import urllib3

    session = requests.Session()
    session.verify = verify
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the environment override session.verify;
    # the certificate to trust is the one given here, so ignore the environment.
    session.trust_env = False
    if verify is False:
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    client = zeep.Client(
        url,
        transport=zeep.Transport(session=session, timeout=30, operation_timeout=30),
        # strict: nothing but the WSDL, for a server configured to type string values as xsd:string.
        plugins=[] if strict else [WstringAsString()],
    )
    # Talk to the server the WSDL came from, whatever address it wrote into soap:address.
    parts = urllib.parse.urlsplit(url)
    service = client.create_service(BINDING, "%s://%s/" % (parts.scheme, parts.netloc))
    dev = Device(client)

    device_id = "zeep-" + secrets.token_hex(8)
    password = secrets.token_urlsafe(24)[:32]
    begun = body_of(service.SessionBegin(szDeviceId=device_id, szPassword=password, nProtocolVersion=PROTOCOL_VERSION), "SessionBegin")
    if not begun.szSessionId or begun.nProtocolVersion != PROTOCOL_VERSION:
        raise ProtocolFailure("SessionBegin: session %r, version %r" % (begun.szSessionId, begun.nProtocolVersion))
    sid = begun.szSessionId

    hashes = [secrets.token_bytes(16) for _ in range(5)]
    message_id = secrets.randbelow(2**31)
    reply = service.Heartbeat(szSessionId=sid, oMaySynchronize=sync_info(hashes), _soapheaders={"messDesc": {"RequestFlag": 1, "MessageId": message_id}})
    echoed = getattr(reply.header, "messDesc", None) if reply.header is not None else None
    if echoed is None or echoed.RequestFlag != 0 or echoed.MessageId != message_id:
        raise ProtocolFailure("Heartbeat: messDesc header not echoed as RequestFlag 0, MessageId %d: %r" % (message_id, echoed))
    command = body_of(reply, "Heartbeat").oCommand

    answered = []
    while command.code != SRV_NO_COMMANDS:
        if len(answered) >= MAX_COMMANDS:
            raise ProtocolFailure("no SRV_NO_COMMANDS after %d commands: %r" % (MAX_COMMANDS, answered))
        answered.append(command.code)
        result = {"code": command.code, "data": answer(dev, command, hashes)}
        command = body_of(service.PutResult(szSessionId=sid, result=result), "PutResult").oNextCommand

    body_of(service.PutEvents(szSessionId=sid, oEventsInfoArray=dev.events(secrets.token_hex(6))), "PutEvents")
    body_of(service.SessionEnd(szSessionId=sid), "SessionEnd")
    print("OK device=%s session=%s commands=%s events=2" % (device_id, sid, ",".join(map(str, answered)) or "none"))


def answer(dev, command, hashes):
    """The device's reply to one server command, with the data type the protocol prescribes for its code."""
    code = command.code
    if code == SRV_APPINFO_GET:
        return dev.app_info(hashes[3], "zeep")
    if code == SRV_APPSTATE_GET:
        return dev.app_state(hashes[4])
    if code == SRV_SETTINGS_GET:
        return dev.settings(hashes[0])
    if code in (SRV_SETTINGS_PUT, SRV_POLICY_PUT):
        if type_name(command.data) != "CmdPar":
            raise ProtocolFailure("command %d carries %s, not CmdPar" % (code, type_name(command.data)))
        return dev.hash_ack(digest(code, serialize_object(command.data.parameters)))
    if code == SRV_SUBSCRIPTIONS_PUT:
        if type_name(command.data) != "CmdSubscriptions":
            raise ProtocolFailure("command 4 carries %s, not CmdSubscriptions" % type_name(command.data))
        return dev.hash_ack(digest(code, serialize_object(command.data)))
    raise ProtocolFailure("unknown command code %r" % code)


def body_of(reply, operation):
    """The reply's body (zeep splits header and body when the WSDL declares an output header)."""
    body = reply.body
    if body is None:
        raise ProtocolFailure("%s: empty reply" % operation)
    error = getattr(body, "oError", None)
    if error is not None:
        raise ProtocolFailure("%s: oError %s %s: %s" % (operation, error.code, error.module, error.message))
    return body


# ======================================================================================== main


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--offline", nargs=2, metavar=("WSDL_PATH", "OUT_DIR"), help="write every request as XML")
    mode.add_argument("--url", help="run a live session against the server whose WSDL is at this URL")
    parser.add_argument("--replies", metavar="DIR", help="offline: also parse the response envelopes of DIR")
    trust = parser.add_mutually_exclusive_group()
    trust.add_argument("--insecure", action="store_true", help="accept any server certificate")
    trust.add_argument("--cafile", help="PEM file of the certificate(s) to trust")
    parser.add_argument(
        "--strict-wsdl",
        action="store_true",
        help="live: no xsd:wstring rewriting (for a server with string_value_type = \"string\")",
    )
    args = parser.parse_args(argv)

    try:
        if args.offline:
            offline(args.offline[0], args.offline[1], args.replies)
        else:
            live(args.url, False if args.insecure else (args.cafile or True), args.strict_wsdl)
    except zeep.exceptions.Fault as fault:
        print("FAIL: SOAP Fault %s: %s" % (fault.code, fault.message), file=sys.stderr)
        return 1
    except ProtocolFailure as failure:
        print("FAIL: %s" % failure, file=sys.stderr)
        return 1
    except Exception as error:  # transport, TLS, XML: any of them fails the run
        print("FAIL: %s: %s" % (type(error).__name__, error), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
