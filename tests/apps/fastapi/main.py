"""A FastAPI app (a test dependency, never the launcher's): `app`, and the factory `create_app()`.

`/scope` what the request's scope says (root_path, client, scheme, path) and the
URL FastAPI builds for a route, which carries root_path.
"""

from fastapi import FastAPI, Request


def create_app() -> FastAPI:
    api = FastAPI()

    @api.get("/scope")
    def scope(request: Request) -> dict:
        return {
            "framework": "fastapi",
            "root_path": request.scope.get("root_path", ""),
            "client": list(request.scope["client"]) if request.scope.get("client") else None,
            "scheme": request.scope["scheme"],
            "path": request.scope["path"],
            "url_for": str(request.url_for("scope")),
        }

    return api


app = create_app()
