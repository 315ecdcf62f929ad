"""The shop through HTTP only, as a browser or an API client would: pages, the admin's forms
(with its session and CSRF cookies), the JSON API; and as a TLS-terminating proxy in front of
the stack passes a browser's HTTPS requests on."""

from __future__ import annotations

import http.cookiejar
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from email.message import Message

TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@dataclass
class Answer:
    status: int
    url: str
    content_type: str
    body: bytes
    headers: Message

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def json(self) -> dict:
        return json.loads(self.body)


def multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """Encode form fields and (field, filename, bytes) files as multipart/form-data."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        parts.append(f"{head}{value}\r\n".encode())
    for name, filename, data in files:
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n")
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class _StayHere(urllib.request.HTTPRedirectHandler):
    """Answer a redirect as it is instead of following it."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class ShopClient:
    def __init__(self, base_url: str, *, follow_redirects: bool = True) -> None:
        self.base_url = base_url
        self.cookies = http.cookiejar.CookieJar()
        self.headers: dict[str, str] = {}  # sent with every request
        handlers: list[urllib.request.BaseHandler] = [urllib.request.HTTPCookieProcessor(self.cookies)]
        if not follow_redirects:
            handlers.append(_StayHere())
        self.opener = urllib.request.build_opener(*handlers)

    def request(self, path: str, data: bytes | None = None, content_type: str | None = None,
                headers: dict[str, str] | None = None) -> Answer:
        request = urllib.request.Request(self.base_url + path.removeprefix(self.base_url), data=data,
                                         headers={**self.headers, **(headers or {})})
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with self.opener.open(request, timeout=120) as response:
                return Answer(response.status, response.url, response.headers.get("Content-Type", ""),
                              response.read(), response.headers)
        except urllib.error.HTTPError as error:
            return Answer(error.code, error.url, error.headers.get("Content-Type", ""), error.read(),
                          error.headers)

    def get(self, path: str) -> Answer:
        return self.request(path)

    def wait_answering(self, path: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.get(path).status == 200:
                    return
            except OSError:
                pass
            time.sleep(2)
        raise AssertionError(f"{self.base_url}{path} did not answer 200 in {timeout:.0f} s")

    def post_form(self, path: str, fields: dict[str, str],
                  files: list[tuple[str, str, bytes]] | None = None) -> Answer:
        """Fetch the form page for its CSRF token, then post it (multipart)."""
        token = TOKEN.search(self.get(path).text)
        assert token, f"no CSRF token on {path}"
        body, content_type = multipart({"csrfmiddlewaretoken": token.group(1), **fields}, files or [])
        return self.request(path, body, content_type, self.form_headers(path))

    def form_headers(self, path: str) -> dict[str, str]:
        """Headers a browser adds to a form it posts (none over plain HTTP here)."""
        return {}

    def login(self, username: str, password: str) -> Answer:
        return self.post_form("/admin/login/?next=/admin/",
                              {"username": username, "password": password, "next": "/admin/"})

    def product_ids(self, query: str) -> list[int]:
        """Ids of the products whose name contains ``query``, from the admin's list pages."""
        ids: list[int] = []
        for page in range(100):
            answer = self.get(f"/admin/catalog/product/?q={urllib.parse.quote(query)}&p={page + 1}")
            found = [int(i) for i in re.findall(r'/admin/catalog/product/(\d+)/change/', answer.text)]
            new = [i for i in dict.fromkeys(found) if i not in ids]
            if answer.status != 200 or not new:
                break
            ids += new
        return ids

    def similar(self, product_id: int) -> dict:
        return self.get(f"/api/products/{product_id}/similar/").json()

    def wait_ready(self, ids: list[int], *, neighbours: int = 10, timeout: float = 900) -> dict[int, dict]:
        """Poll the API until every product is ready with its full list; return the answers."""
        deadline = time.monotonic() + timeout
        done: dict[int, dict] = {}
        while time.monotonic() < deadline:
            for pid in [i for i in ids if i not in done]:
                answer = self.similar(pid)
                if answer["state"] == "ready" and len(answer["neighbours"]) == neighbours:
                    done[pid] = answer
                assert answer["state"] != "failed", answer
            if len(done) == len(ids):
                return done
            time.sleep(3)
        raise AssertionError(f"{len(ids) - len(done)} of {len(ids)} products not ready in {timeout:.0f} s")


class ProxiedShopClient(ShopClient):
    """A browser on the page ``origin`` (https://host[:port]) reaching the stack through a
    TLS-terminating proxy: every request carries X-Forwarded-Proto: https and the Host the
    proxy passes on (``host``, by default the origin's host name without its port, as nginx's
    ``proxy_set_header Host $host`` sends it); every form post carries the browser's Origin and
    Referer. The browser holds Secure cookies because it talks HTTPS to the proxy, so this
    client keeps and returns them over the plain HTTP it uses to reach the stack."""

    def __init__(self, base_url: str, origin: str, *, host: str | None = None) -> None:
        super().__init__(base_url)
        self.origin = origin
        self.headers = {"Host": host or str(urllib.parse.urlsplit(origin).hostname),
                        "X-Forwarded-Proto": "https"}
        self.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(secure_protocols=("https", "http")))

    def form_headers(self, path: str) -> dict[str, str]:
        return {"Origin": self.origin, "Referer": self.origin + path}

    def cookie_flags(self) -> dict[str, set[str]]:
        """{cookie name: the flags it was set with, of Secure and HttpOnly}."""
        return {cookie.name: {flag for flag, on in (("Secure", cookie.secure),
                                                    ("HttpOnly", cookie.has_nonstandard_attr("HttpOnly")))
                              if on}
                for cookie in self.cookies}
