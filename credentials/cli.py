"""`geni-am authority ...` (development authority) and `geni-am credential verify`.

Handlers print what they did and return an exit status; any library error becomes a one-line
`error: ...` on stderr with a non-zero status, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    auth = subparsers.add_parser("authority", help="development certificate/credential authority")
    asub = auth.add_subparsers(dest="authority_command", metavar="ACTION")
    auth.set_defaults(func=lambda a: (auth.print_help(), 2)[1])

    p = asub.add_parser("init", help="create a self-signed authority in DIR")
    p.add_argument("dir")
    p.add_argument("--authority", default="geni-am",
                   help="URN authority of the CA (default geni-am)")
    p.set_defaults(func=_init)

    p = asub.add_parser("user", help="mint a user certificate, key and user credential")
    p.add_argument("name")
    p.add_argument("--dir", required=True)
    p.add_argument("--email")
    p.set_defaults(func=_user)

    p = asub.add_parser("slice", help="mint a slice certificate and a slice credential")
    p.add_argument("name")
    p.add_argument("--owner", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--algorithm", choices=("rsa-sha256", "rsa-sha1"), default="rsa-sha256")
    p.set_defaults(func=_slice)

    p = asub.add_parser("delegate", help="delegate a credential to another user")
    p.add_argument("cred")
    p.add_argument("--to", required=True, dest="to_user")
    p.add_argument("--dir", required=True)
    p.add_argument("--privileges", nargs="+", metavar="P",
                   help="privileges to delegate (default: all of the parent's); "
                        "space- or comma-separated")
    p.add_argument("--can-delegate", action="store_true",
                   help="let the delegatee delegate further")
    p.add_argument("--expires", help="xs:dateTime or +Nd/+Nh (default: the parent's expiry)")
    p.set_defaults(func=_delegate)

    p = asub.add_parser("speaks-for", help="a speaks-for credential: TOOL acts for USER")
    p.add_argument("--tool", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--dir", required=True)
    p.set_defaults(func=_speaks_for)

    p = asub.add_parser("server-cert", help="the AM's TLS certificate, signed by the CA")
    p.add_argument("--dir", required=True)
    p.add_argument("--am-authority", help="default <authority>:localhost")
    p.add_argument("--hostname", action="append", dest="hostnames",
                   help="DNS name or IP (repeatable; default localhost and 127.0.0.1)")
    p.set_defaults(func=_server_cert)

    p = asub.add_parser("revoke", help="revoke a certificate: add it to the authority's CRL "
                        "(DIR/trust-roots/ca.crl)",
                        description="Add a certificate this authority issued to its CRL and "
                        "write the signed CRL to DIR/trust-roots/ca.crl, where an AM using that "
                        "trust-roots directory picks it up (crl_refresh_s). Revoking a serial "
                        "already listed re-signs the CRL with fresh dates.")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("cert", nargs="?", help="certificate PEM file (its first certificate)")
    which.add_argument("--serial", help="serial number: decimal, 0x-hex or 1A:2B:.. hex")
    p.add_argument("--dir", required=True)
    p.add_argument("--reason", help="RFC 5280 reason, e.g. keyCompromise, superseded, "
                   "cessationOfOperation, affiliationChanged")
    p.add_argument("--days", type=int, default=30, help="CRL nextUpdate in days (30)")
    p.add_argument("--der", action="store_true", help="write DER instead of PEM")
    p.set_defaults(func=_revoke)

    cred = subparsers.add_parser("credential", help="inspect GENI credentials")
    csub = cred.add_subparsers(dest="credential_command", metavar="ACTION")
    cred.set_defaults(func=lambda a: (cred.print_help(), 2)[1])
    p = csub.add_parser("verify", help="verify a credential and say why it fails")
    p.add_argument("file", help="signed-credential XML, or an AM API JSON struct")
    p.add_argument("--trust-roots", required=True, help="directory of trusted root PEMs "
                   "(and CRLs)")
    p.add_argument("--crl-dir", help="directory of CRLs (default: the trust-roots directory)")
    p.add_argument("--caller", help="caller certificate PEM (owner must be this caller)")
    p.add_argument("--target", help="URN the credential must target")
    p.add_argument("--privilege", action="append", default=[], metavar="P",
                   help="required privilege, operation or AM API method (repeatable)")
    p.add_argument("--speaking-for", help="with an ABAC speaks-for file: the user URN")
    p.set_defaults(func=_verify)


def _fail(exc: Exception) -> int:
    code = getattr(exc, "geni_code", None)
    suffix = f" (geni_code {code})" if code is not None else ""
    print(f"error: {exc}{suffix}", file=sys.stderr)
    return 1


def _guard(func):
    def run(args: argparse.Namespace) -> int:
        from credentials.errors import CredentialError
        try:
            return func(args)
        except CredentialError as exc:
            return _fail(exc)
        except OSError as exc:
            print(f"error: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
            return 1
    return run


def _wrote(*paths: Path) -> None:
    for path in paths:
        print(f"wrote {path}")


@_guard
def _init(args: argparse.Namespace) -> int:
    from credentials.authority import DevAuthority
    auth = DevAuthority.init(args.dir, authority=args.authority)
    _wrote(*auth.files.values())
    print(f"authority {auth.urn}")
    return 0


@_guard
def _user(args: argparse.Namespace) -> int:
    from credentials.authority import DevAuthority
    files = DevAuthority(args.dir).user(args.name, email=args.email)
    _wrote(files.cert, files.key, files.credential)
    return 0


@_guard
def _slice(args: argparse.Namespace) -> int:
    from credentials.authority import DevAuthority
    auth = DevAuthority(args.dir)
    path = auth.slice(args.name, args.owner, days=args.days, algorithm=args.algorithm)
    _wrote(auth.dir / f"{args.name}-slice-cert.pem", path)
    return 0


@_guard
def _delegate(args: argparse.Namespace) -> int:
    from credentials.authority import DevAuthority, parse_expires
    privileges = None
    if args.privileges:
        privileges = [p for item in args.privileges for p in item.split(",") if p]
    expires = parse_expires(args.expires) if args.expires else None
    path = DevAuthority(args.dir).delegate(args.cred, args.to_user, privileges=privileges,
                                           can_delegate=args.can_delegate, expires=expires)
    _wrote(path)
    return 0


@_guard
def _speaks_for(args: argparse.Namespace) -> int:
    from credentials.authority import DevAuthority
    auth = DevAuthority(args.dir)
    created_tool = not (auth.dir / f"{args.tool}-cert.pem").exists()
    path = auth.speaks_for(args.tool, args.user)
    if created_tool:
        _wrote(auth.dir / f"{args.tool}-cert.pem", auth.dir / f"{args.tool}-key.pem")
    _wrote(path)
    return 0


@_guard
def _server_cert(args: argparse.Namespace) -> int:
    from credentials.authority import DevAuthority
    hosts = args.hostnames or ["localhost", "127.0.0.1"]
    _wrote(*DevAuthority(args.dir).server_cert(args.am_authority, hosts))
    return 0


@_guard
def _revoke(args: argparse.Namespace) -> int:
    from credentials.authority import DevAuthority
    from credentials.crl import format_serial, parse_serial
    serial = parse_serial(args.serial) if args.serial is not None else None
    done = DevAuthority(args.dir).revoke(args.cert, serial, reason=args.reason, days=args.days,
                                         der=args.der)
    entry = done.entry
    state = "already revoked" if done.already else "revoked"
    serial_text = f"serial {format_serial(entry.serial)}"
    who = f"{done.label} ({serial_text})" if done.label else serial_text
    print(f"{state}: {who} on {_fmt(entry.revoked_at)}"
          + (f", reason {entry.reason}" if entry.reason else ""))
    _wrote(done.crl)
    print(f"CRL number {done.number}: {done.total} revoked certificate(s)")
    return 0


def _read_credential(path: str) -> bytes:
    from credentials.errors import CredentialInvalid
    from credentials.xmlsafe import to_bytes
    data = Path(path).read_bytes()
    if data.lstrip()[:1] == b"{":
        try:
            struct = json.loads(data)
            value = struct["geni_value"]
        except (ValueError, KeyError, TypeError):
            raise CredentialInvalid(f"{path}: JSON is not a {{geni_type, geni_value}} struct") \
                from None
        if not isinstance(value, str):
            raise CredentialInvalid(f"{path}: geni_value is not a string")
        return to_bytes(value)
    return data


def _fmt(ts) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


@_guard
def _verify(args: argparse.Namespace) -> int:
    from credentials import privileges as privs
    from credentials.certs import TrustStore
    from credentials.document import parse_document
    from credentials.errors import (CredentialError, CredentialMismatch,
                                    InsufficientPrivileges)
    from credentials.urn import urns_equal
    from credentials.verify import CredentialVerifier, check_speaks_for
    from credentials.xmlsafe import DEFAULT_MAX_BYTES

    data = _read_credential(args.file)
    trust = TrustStore.from_directory(args.trust_roots, crl_dir=args.crl_dir)
    verifier = CredentialVerifier(trust)
    # Show the claims first (unverified), so a refusal can still be explained.
    try:
        doc = parse_document(data, DEFAULT_MAX_BYTES)
    except CredentialError as exc:
        print(f"FAIL: {exc} (geni_code {exc.geni_code})")
        return 1
    top = doc.top
    print(f"file: {args.file}")
    print(f"type: {top.type}")
    if top.type == "abac" and top.abac is not None:
        stmt = top.abac
        print(f"statement: {stmt.head.mnemonic or stmt.head.keyid}.{stmt.head_role} <- "
              + ", ".join(t.mnemonic or t.keyid for t, _, _ in stmt.tails))
    else:
        print(f"owner: {_safe(lambda: top.owner_urn)}")
        print(f"target: {_safe(lambda: top.target_urn)}")
    print(f"expires: {_fmt(top.expires)}")
    if top.type != "abac":
        print("privileges: " + (", ".join(
            f"{n}{' (delegatable)' if d else ''}" for n, d in top.privileges.items()) or "none"))
    for level in reversed(doc.levels):
        signer = _safe(lambda: _urn_of(level.signer_certs[0]))
        what = f"owner {_safe(lambda: level.owner_urn)}" if level.type != "abac" else "abac"
        print(f"level {level.xml_id}: signed by {signer} -> {what}, "
              f"expires {_fmt(level.expires)}")
    try:
        vc = verifier.verify(data)
        print("signer chain: " + " <- ".join(vc.signer_chain) + " (leaf first, root last)")
        if args.caller:
            caller = verifier.caller_identity(Path(args.caller).read_bytes())
            if vc.type == "abac":
                if not args.speaking_for:
                    raise CredentialMismatch("an ABAC speaks-for credential needs "
                                             "--speaking-for USER_URN with --caller TOOL_CERT")
                user = check_speaks_for(vc, caller, args.speaking_for)
                print(f"speaks-for: {caller.urn} may act for {user.urn}")
            elif not urns_equal(vc.owner_urn, caller.urn):
                raise CredentialMismatch(f"owner {vc.owner_urn} is not the caller {caller.urn}")
        if args.target and not urns_equal(vc.target_urn, args.target):
            raise CredentialMismatch(f"target {vc.target_urn} is not {args.target}")
        for wanted in args.privilege:
            if wanted.lower() in privs.RIGHTS:
                ok = privs.has_right(vc.privileges, wanted)
            else:
                ok = all(privs.allowed(vc.privileges, op) for op in privs.operations_for(wanted))
            if not ok:
                raise InsufficientPrivileges(f"privileges do not allow {wanted!r}")
    except CredentialError as exc:
        print(f"FAIL: {exc} (geni_code {exc.geni_code})")
        return 1
    print("OK")
    return 0


def _urn_of(cert) -> str:
    from credentials.certs import identity_of
    return identity_of(cert).urn


def _safe(fn) -> str:
    try:
        return fn()
    except Exception as exc:   # display only: the verification below reports the real reason
        return f"<unreadable: {exc}>"
