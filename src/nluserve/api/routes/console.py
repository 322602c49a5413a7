"""GET /console: the web console (static files from nluserve.console, strict CSP)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from nluserve.api.problems import ProblemError
from nluserve.console import SECURITY_HEADERS, Asset, assets

# HEAD (uptime probes, link checkers) is answered as GET without the body for every route, by
# RequestContext (api/middleware.py).
router = APIRouter(prefix="/console", include_in_schema=False)


def _serve(asset: Asset, request: Request) -> Response:
    # no-cache = revalidate every time: a new release is picked up at once, an unchanged file
    # costs a 304.
    headers = {**SECURITY_HEADERS, "ETag": asset.etag, "Cache-Control": "no-cache"}
    if _matches(request.headers.get("if-none-match"), asset.etag):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


def _matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 13.1.2: a list of tags, weak comparison (a ``W/`` prefix is ignored), or ``*``."""
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag.removeprefix("W/") in tags


@router.get("")
async def console_root() -> Response:
    """Redirect to the trailing slash so the page's relative asset URLs resolve under /console/."""
    return RedirectResponse("console/", status_code=308, headers=SECURITY_HEADERS)


@router.get("/")
async def console_page(request: Request) -> Response:
    return _serve(assets()["index.html"], request)


@router.get("/assets/{name}")
async def console_asset(name: str, request: Request) -> Response:
    asset = assets().get(name)
    if asset is None or name == "index.html":
        raise _missing()
    return _serve(asset, request)


@router.get("/{rest:path}")
async def console_missing(rest: str) -> Response:
    raise _missing()


def _missing() -> ProblemError:
    # With the console's own headers: "every console response carries them", a 404 too. The
    # name asked for is not echoed back.
    return ProblemError(
        404, "not-found", "Not found", "no such console page or asset", headers=SECURITY_HEADERS
    )
