"""The query parameters of a signed URL, as route parameters (so strict input accepts them on
the routes that honour signed URLs, and the OpenAPI document describes them there).

They are declared as strings and parsed by api/http/signing.py, so a malformed value is the
signed URL's 403, not a framework 400. Handlers read them through
`bucket_access.signature_params(request.query_params)`.
"""

from __future__ import annotations

from typing import Annotated

from litestar.params import QueryParameter

SignedMethod = Annotated[
    str | None,
    QueryParameter(name="method", description="Signed URL: the method it grants (GET, HEAD, PUT)"),
]
SignedExpires = Annotated[
    str | None,
    QueryParameter(description="Signed URL: when it expires (epoch seconds)"),
]
SignedMaxSize = Annotated[
    str | None,
    QueryParameter(description="Signed PUT URL: the largest body it accepts"),
]
SignedVersion = Annotated[
    str | None,
    QueryParameter(description="Signed PUT URL: the object version it may replace"),
]
SignedKid = Annotated[
    str | None,
    QueryParameter(description="Signed URL: which server key signed it"),
]
Signature = Annotated[
    str | None,
    QueryParameter(description="Signed URL: base64url HMAC-SHA256"),
]
