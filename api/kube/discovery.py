"""Discovery as kube-apiserver serves it (the legacy, unaggregated format, which client-go falls back to
when the answer is plain ``application/json``): ``/version``, ``/api``, ``/apis``, the group and the
group-version's resource list, shaped as kube-apiserver lists CRDs.

From ``name``, ``singularName`` and the group kubectl resolves every alias of the spec:
``globalalert[s]``, ``globalalert[s].projectcalico.org`` and ``globalalert[s].p`` (a group prefix). The spec
names no short names, so none are listed.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.http import render
from api.resources import API_VERSION, GROUP, KINDS, VERSION, Kind

KUBERNETES_VERSION = {"major": "1", "minor": "33"}  # the API conventions followed (kubectl's own version)
GIT_VERSION = f"v{KUBERNETES_VERSION['major']}.{KUBERNETES_VERSION['minor']}.0+policywatch"
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]

router = APIRouter(tags=["kubernetes"], include_in_schema=False)


def api_resource(kind: Kind) -> dict[str, Any]:
    return {
        "name": kind.plural,
        "singularName": kind.singular,
        "namespaced": False,
        "kind": kind.kind,
        "verbs": VERBS,
    }


def group_version() -> dict[str, str]:
    return {"groupVersion": API_VERSION, "version": VERSION}


def api_group() -> dict[str, Any]:
    return {"name": GROUP, "versions": [group_version()], "preferredVersion": group_version()}


@router.get("/version")
def version(request: Request) -> Response:
    return render(
        request,
        {
            **KUBERNETES_VERSION,
            "gitVersion": f"{GIT_VERSION}.{request.app.version}",
            "gitCommit": "",
            "gitTreeState": "",
            "buildDate": "",
            "goVersion": "",
            "compiler": "",
            "platform": "linux/amd64",
        },
    )


@router.get("/api")
def core_versions(request: Request) -> Response:
    """No core (``v1``) resources here: only the Calico group under ``/apis``."""
    return render(request, {"kind": "APIVersions", "versions": [], "serverAddressByClientCIDRs": []})


@router.get("/apis")
def groups(request: Request) -> Response:
    return render(request, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group()]})


@router.get(f"/apis/{GROUP}")
def group(request: Request) -> Response:
    return render(request, {"kind": "APIGroup", "apiVersion": "v1", **api_group()})


@router.get(f"/apis/{API_VERSION}")
def resources(request: Request) -> Response:
    return render(
        request,
        {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": API_VERSION,
            "resources": [api_resource(k) for k in KINDS],
        },
    )
