"""Drives a vectord running with auth using the real Chroma Python client (chromadb-client 1.5.9).

Usage: python chroma_auth_scenario.py HOST PORT
The server must run with --auth-tokens holding the tokens below (see tests/run.sh) and
CHROMA_SERVER_AUTHN_CREDENTIALS=env-admin-token. Checks the credential forms, the exception
classes the client raises for 401 and 403, and that the client adopts the tenant and database
that /auth/identity reports.
"""

import base64
import os
import sys

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import chromadb  # noqa: E402
from chromadb.config import Settings  # noqa: E402
from chromadb.errors import AuthorizationError, ChromaAuthError  # noqa: E402
from scenario import check, done  # noqa: E402  (tests/python/scenario.py)

host, port = sys.argv[1], int(sys.argv[2])
TOKEN = "chromadb.auth.token_authn.TokenAuthClientProvider"


def settings(provider=None, credentials=None, header=None, adopt=False):
    kw = dict(anonymized_telemetry=False, allow_reset=True)
    if provider:
        kw.update(chroma_client_auth_provider=provider, chroma_client_auth_credentials=credentials)
    if header:
        kw["chroma_auth_token_transport_header"] = header
    if adopt:
        kw["chroma_overwrite_singleton_tenant_database_access_from_auth"] = True
    return Settings(**kw)


def client(provider=None, credentials=None, header=None, adopt=False, **kw):
    return chromadb.HttpClient(host=host, port=port, settings=settings(provider, credentials, header, adopt), **kw)


def raises(name, exc_class, fn, needle=None):
    try:
        fn()
    except exc_class as e:  # noqa: PERF203
        check(name, needle is None or needle in str(e), str(e))
        return
    except Exception as e:  # noqa: BLE001
        check(name, False, f"raised {type(e).__name__}: {e}")
    check(name, False, "no exception")


# Open routes need no credentials; anything else is a 401, raised as ChromaAuthError.
raises("no credentials -> ChromaAuthError", ChromaAuthError, lambda: client())
raises("wrong token -> ChromaAuthError", ChromaAuthError, lambda: client(TOKEN, "not-a-token"))

admin = client(TOKEN, "env-admin-token")
check("admin heartbeat", admin.heartbeat() > 0)
admin.reset()
adm = chromadb.AdminClient(
    Settings(
        chroma_api_impl="chromadb.api.fastapi.FastAPI",
        chroma_server_host=host,
        chroma_server_http_port=port,
        anonymized_telemetry=False,
        chroma_client_auth_provider=TOKEN,
        chroma_client_auth_credentials="admin-token",
    )
)
adm.create_tenant("clinic")
adm.create_database("prod", tenant="clinic")
seed = client(TOKEN, "admin-token", tenant="clinic", database="prod")
policies = seed.create_collection("policies", embedding_function=None)
policies.add(ids=["p1", "p2"], embeddings=[[1.0, 0.0], [0.0, 1.0]], documents=["one", "two"])
check("admin writes in clinic/prod", policies.count() == 2)

# X-Chroma-Token transport, read-write token on the default database.
rw = client(TOKEN, "rw-token", header="X-Chroma-Token")
mine = rw.create_collection("mine", embedding_function=None)
mine.add(ids=["a"], embeddings=[[0.5, 0.5]])
check("rw via X-Chroma-Token", mine.count() == 1)
adm_rw = chromadb.AdminClient(
    Settings(
        chroma_api_impl="chromadb.api.fastapi.FastAPI",
        chroma_server_host=host,
        chroma_server_http_port=port,
        anonymized_telemetry=False,
        chroma_client_auth_provider=TOKEN,
        chroma_client_auth_credentials="rw-token",
    )
)
raises("rw cannot create tenants -> AuthorizationError", AuthorizationError, lambda: adm_rw.create_tenant("other"))
raises(
    "rw outside its database -> AuthorizationError",
    AuthorizationError,
    lambda: client(TOKEN, "rw-token", tenant="clinic", database="prod"),
)

# Basic auth (the token file holds sha256("alice:wonderland")). The client's
# BasicAuthClientProvider imports bcrypt, which the thin client does not ship, so the header is
# passed the way HttpClient(headers=...) users do.
def basic_client(user_pass):
    value = "Basic " + base64.b64encode(user_pass.encode()).decode()
    return chromadb.HttpClient(host=host, port=port, headers={"Authorization": value}, settings=settings())


basic = basic_client("alice:wonderland")
check("basic auth", [c.name for c in basic.list_collections()] == ["mine"])
raises("wrong password -> ChromaAuthError", ChromaAuthError, lambda: basic_client("alice:nope"))

# A read-only token scoped to clinic/prod: the client adopts tenant and database from identity.
ro = client(TOKEN, "ro-token", adopt=True)
check("identity adopted", (ro.tenant, ro.database) == ("clinic", "prod"), (ro.tenant, ro.database))
col = ro.get_collection("policies", embedding_function=None)
res = col.query(query_embeddings=[[1.0, 0.1]], n_results=1)
check("ro query", res["ids"] == [["p1"]], res)
raises("ro add -> AuthorizationError", AuthorizationError, lambda: col.add(ids=["x"], embeddings=[[1.0, 1.0]]))
raises("ro delete_collection -> AuthorizationError", AuthorizationError, lambda: ro.delete_collection("policies"))
raises("ro reset -> AuthorizationError", AuthorizationError, lambda: ro.reset())

done()
