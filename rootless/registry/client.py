"""An OCI distribution v2 client on trio, built on httpx.

Why httpx: its async client runs on trio (through anyio), it streams request and response
bodies, follows redirects (blob storage on another host, dropping Authorization on the
way), pools connections and speaks HTTP/1.1 well; it is maintained and typed. We need no
HTTP/2 from a registry, and aiohttp is asyncio-only.

What this module adds on top (and only this):

* Endpoint and scheme: ``https://HOST/v2/``. Plain HTTP only for registries the user
  names as insecure (``--tls-verify=false``, ``RSBOX_INSECURE_REGISTRIES``) and loopback
  ones, and only after HTTPS failed to connect (Podman's rule).
* TLS: verified by default against the system CA store (``ssl.create_default_context``,
  not certifi, so an administrator's added CA counts); extra CAs and client certificates
  from a cert dir (``--cert-dir``, else ``certs.d/HOST[:PORT]`` under
  $XDG_CONFIG_HOME/containers, /etc/containers, /etc/docker): ``*.crt`` are CAs,
  ``X.cert`` + ``X.key`` a client certificate.
* Auth, as Docker Hub, GHCR, Quay and GitLab expect it: a request answered 401 with
  ``WWW-Authenticate: Bearer realm=..,service=..,scope=..`` fetches a token from the realm
  (anonymously, or with basic credentials), caches it per scope and replays the request;
  a second 401 with a cached token means it expired: fetch once more, then give up.
  ``Basic`` challenges get the credentials directly.
* Retries: 429 and 5xx answers and transport errors are retried with exponential
  backoff (honouring a short ``Retry-After``); 4xx are not.
"""

from __future__ import annotations

import base64
import json
import os
import re
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import trio

from rootless.errors import ImageError, ImageNotFound

from . import AuthError, RegistryError
from .auth import Credentials, find_credentials
from .reference import is_loopback

USER_AGENT = "rsbox/0.1"
_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@dataclass(frozen=True)
class TransportOptions:
    tls_verify: bool = True
    cert_dir: Path | None = None
    insecure: frozenset[str] = frozenset()  # registries where plain HTTP is allowed
    retries: int = 4
    backoff: float = 0.5  # seconds; doubled at each retry
    credentials: Credentials | None = None  # overrides the credential files

    def plain_http_allowed(self, registry: str) -> bool:
        return not self.tls_verify or registry in self.insecure or is_loopback(registry)


def insecure_from_env() -> frozenset[str]:
    raw = os.environ.get("RSBOX_INSECURE_REGISTRIES", "")
    return frozenset(r.strip() for r in raw.split(",") if r.strip())


def cert_dirs(registry: str) -> list[Path]:
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return [
        config / "containers" / "certs.d" / registry,
        Path("/etc/containers/certs.d") / registry,
        Path("/etc/docker/certs.d") / registry,
    ]


def ssl_context(registry: str, opts: TransportOptions) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if not opts.tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    dirs = [opts.cert_dir] if opts.cert_dir is not None else cert_dirs(registry)
    for d in dirs:
        if not d.is_dir():
            if opts.cert_dir is not None:
                raise RegistryError(
                    f"--cert-dir {d} is not a directory",
                    hint="name a directory holding the registry's CA as *.crt",
                )
            continue
        try:
            for crt in sorted(d.glob("*.crt")):
                ctx.load_verify_locations(cafile=str(crt))
            for cert in sorted(d.glob("*.cert")):
                ctx.load_cert_chain(str(cert), str(cert.with_suffix(".key")))
        except (OSError, ssl.SSLError) as exc:
            raise RegistryError(
                f"cannot load certificates from {d}: {exc}",
                hint="*.crt must be PEM CA certificates; X.cert needs its X.key",
            ) from exc
    return ctx


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="r",service="s"`` -> ("bearer", {"realm": "r", "service": "s"})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _CHALLENGE_PARAM.finditer(rest)
    }
    return scheme.lower(), params


# The alerts a server sends when it wants a client certificate we did not give.
_CLIENT_CERT_ALERTS = frozenset(
    {"SSLV3_ALERT_BAD_CERTIFICATE", "TLSV13_ALERT_CERTIFICATE_REQUIRED"}
)


def _tls_refusal(exc: BaseException) -> ssl.SSLError | None:
    """The TLS failure behind a transport error (with trio, httpx wraps it in a
    BrokenResourceError) when it proves that the server speaks TLS: it sent a certificate
    we do not trust, or wants one from us. A plain HTTP server answers our hello with
    garbage, which is an SSLError too, and not one of these."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ssl.SSLCertVerificationError) or (
            isinstance(cur, ssl.SSLError) and cur.reason in _CLIENT_CERT_ALERTS
        ):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


class Interrupted(RegistryError):
    """The connection broke during a download: starting it again may work."""


def _retry_after(resp: httpx.Response, default: float) -> float:
    value = resp.headers.get("retry-after", "")
    if value.isdigit():
        return min(float(value), 10.0)
    return default


@dataclass
class _AuthState:
    scheme: str = ""  # "", "basic", "bearer"
    challenge: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # scope -> token


class RegistryClient:
    """One registry. Use as ``async with RegistryClient(registry, opts) as c:``."""

    def __init__(self, registry: str, endpoint: str, opts: TransportOptions) -> None:
        self.registry = registry
        self.endpoint = endpoint
        self.opts = opts
        self.credentials = opts.credentials or find_credentials(registry)
        self._auth = _AuthState()
        self._base: str | None = None
        self._http = httpx.AsyncClient(
            verify=ssl_context(endpoint, opts),
            follow_redirects=True,
            timeout=httpx.Timeout(60.0, connect=15.0),
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
        )
        self._base_lock = trio.Lock()

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(
        self,
        et: type[BaseException] | None,
        ev: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._http.aclose()

    # -- endpoint -----------------------------------------------------------------------

    def _tls_error(self, exc: Exception) -> RegistryError:
        text = str(exc)
        tls = _tls_refusal(exc)
        if isinstance(tls, ssl.SSLCertVerificationError):
            return RegistryError(
                f"the TLS certificate of {self.registry} is not trusted: {tls.verify_message}",
                hint="give its CA with --cert-dir DIR (DIR/ca.crt), or --tls-verify=false",
            )
        if tls is not None:
            return RegistryError(
                f"{self.registry} wants a client certificate and refused ours ({tls.reason})",
                hint="put NAME.cert and NAME.key (signed for this registry) in --cert-dir DIR",
            )
        return RegistryError(
            f"cannot connect to {self.registry}: {text or type(exc).__name__}",
            hint="check the registry name and that it is reachable",
        )

    async def base(self) -> str:
        """``https://HOST`` or, where allowed and HTTPS fails, ``http://HOST``."""
        async with self._base_lock:
            if self._base is not None:
                return self._base
            https = f"https://{self.endpoint}"
            try:
                await self._http.get(f"{https}/v2/")
                self._base = https
            except httpx.TransportError as exc:
                # A server that proved it speaks TLS is never tried over plain HTTP.
                if not self.opts.plain_http_allowed(self.registry) or _tls_refusal(exc):
                    raise self._tls_error(exc) from exc
                http = f"http://{self.endpoint}"
                try:
                    await self._http.get(f"{http}/v2/")
                except httpx.TransportError as exc2:
                    raise self._tls_error(exc2) from exc2
                self._base = http
            return self._base

    # -- auth ---------------------------------------------------------------------------

    def _basic(self) -> str:
        assert self.credentials is not None
        raw = f"{self.credentials.username}:{self.credentials.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def _auth_header(self, scope: str) -> str | None:
        if self._auth.scheme == "basic" and self.credentials is not None:
            return self._basic()
        if self._auth.scheme == "bearer":
            token = self._auth.tokens.get(scope)
            return f"Bearer {token}" if token else None
        return None

    def _wrong_credentials(self) -> AuthError:
        assert self.credentials is not None
        return AuthError(
            f"{self.registry} rejected the credentials of user {self.credentials.username!r}",
            hint=f"log in again with `rsbox login {self.registry}`",
        )

    def _needs_login(self) -> AuthError:
        return AuthError(
            f"{self.registry} requires authentication",
            hint=f"log in with `rsbox login {self.registry}`",
        )

    async def _fetch_token(self, scope: str) -> None:
        realm = self._auth.challenge.get("realm")
        if not realm:
            raise RegistryError(f"{self.registry}: bearer challenge without a realm")
        params: dict[str, str] = {}
        if service := self._auth.challenge.get("service"):
            params["service"] = service
        if scope:
            params["scope"] = scope
        headers = {}
        if self.credentials is not None:
            headers["Authorization"] = self._basic()
        try:
            resp = await self._http.get(realm, params=params, headers=headers)
        except httpx.TransportError as exc:
            raise self._tls_error(exc) from exc
        if resp.status_code in (401, 403):
            raise self._wrong_credentials() if self.credentials else self._needs_login()
        if resp.status_code != 200:
            raise RegistryError(
                f"{self.registry}: the token service {realm} answered {resp.status_code}",
                hint="try again later",
            )
        try:
            doc = resp.json()
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError) as exc:
            raise RegistryError(f"{self.registry}: the token service sent no JSON") from exc
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{self.registry}: the token service sent no token")
        self._auth.tokens[scope] = token

    async def _on_401(self, resp: httpx.Response, scope: str, tried: set[str]) -> None:
        """Prepare the replay of a request answered 401, or raise."""
        scheme, params = parse_challenge(resp.headers.get("www-authenticate", ""))
        if scheme == "basic":
            if self.credentials is None:
                raise self._needs_login()
            if "basic" in tried:
                raise self._wrong_credentials()
            tried.add("basic")
            self._auth.scheme = "basic"
            return
        if scheme == "bearer":
            if "bearer" in tried:  # a fresh token was refused
                raise self._wrong_credentials() if self.credentials else self._needs_login()
            tried.add("bearer")
            self._auth.scheme = "bearer"
            self._auth.challenge = params
            # The challenge names the scope this request needs (it may be wider than ours,
            # e.g. a cross-repository mount).
            await self._fetch_token(params.get("scope", scope))
            if params.get("scope", scope) != scope:
                self._auth.tokens[scope] = self._auth.tokens[params.get("scope", scope)]
            return
        raise RegistryError(
            f"{self.registry} answered 401 with an unsupported challenge {scheme!r}",
            hint="rsbox speaks Basic and Bearer token auth",
        )

    # -- requests -----------------------------------------------------------------------

    @asynccontextmanager
    async def request(
        self,
        method: str,
        url_or_path: str,
        *,
        scope: str,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """Send a request (auth, retries handled) and yield the streamed response.

        The body is not read: callers read it (``aread``, ``aiter_raw``) inside the block.
        Statuses other than 401/429/5xx are the caller's to interpret.
        """
        if url_or_path.startswith(("http://", "https://")):
            url = url_or_path
        else:
            url = await self.base() + url_or_path
        tried: set[str] = set()
        attempt = 0
        while True:
            hdrs = dict(headers or {})
            if (auth := self._auth_header(scope)) is not None:
                hdrs["Authorization"] = auth
            req = self._http.build_request(
                method, url, headers=hdrs, content=content, params=params
            )
            try:
                resp = await self._http.send(req, stream=True)
            except httpx.TransportError as exc:
                if attempt >= self.opts.retries:
                    raise RegistryError(
                        f"{method} {url} failed: {exc or type(exc).__name__}",
                        hint="the registry is unreachable or dropped the connection; try again",
                    ) from exc
                await trio.sleep(self.opts.backoff * 2**attempt)
                attempt += 1
                continue
            if resp.status_code == 401:
                await resp.aclose()
                await self._on_401(resp, scope, tried)
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                await resp.aclose()
                if attempt >= self.opts.retries:
                    raise RegistryError(
                        f"{method} {url}: the registry answered {resp.status_code} "
                        f"{resp.reason_phrase} {attempt + 1} times",
                        hint="the registry is overloaded or failing; try again later",
                    )
                await trio.sleep(_retry_after(resp, self.opts.backoff * 2**attempt))
                attempt += 1
                continue
            try:
                yield resp
            finally:
                await resp.aclose()
            return

    async def read_limited(self, resp: httpx.Response, limit: int, what: str) -> bytes:
        declared = resp.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise RegistryError(
                f"{what} is {declared} bytes, more than the limit of {limit}",
                hint="the registry sent something that is not an image manifest",
            )
        buf = bytearray()
        try:
            async for chunk in resp.aiter_bytes():
                buf += chunk
                if len(buf) > limit:
                    raise RegistryError(
                        f"{what} is larger than the limit of {limit} bytes",
                        hint="the registry sent something that is not an image manifest",
                    )
        except httpx.TransportError as exc:
            raise Interrupted(
                f"{what}: the connection broke during the download ({exc or type(exc).__name__})",
                hint="nothing was stored; pull again",
            ) from exc
        return bytes(buf)

    def error_for(self, resp: httpx.Response, what: str, body: bytes = b"") -> ImageError:
        """A one-line error for an unexpected answer (the registry's own message if any)."""
        detail = ""
        try:
            errors: Any = json.loads(body).get("errors") if body else None
            if errors:
                detail = ": " + "; ".join(
                    str(e.get("message") or e.get("code")) for e in errors if isinstance(e, dict)
                )
        except (ValueError, AttributeError):
            pass
        if resp.status_code == 404:
            return ImageNotFound(
                f"{what}: not found on {self.registry}{detail}",
                hint="check the name and the tag (`skopeo list-tags` shows the tags)",
            )
        if resp.status_code == 403:
            return AuthError(
                f"{what}: access denied by {self.registry}{detail}",
                hint=f"log in with an account that may access it: `rsbox login {self.registry}`",
            )
        return RegistryError(
            f"{what}: {self.registry} answered {resp.status_code} {resp.reason_phrase}{detail}",
            hint="see the registry's message; try again",
        )
