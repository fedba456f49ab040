"""HTTP policy server: FastAPI app (`/health`, `/version`, `/act`), bearer token off loopback, hot reload.

Modules: `config` (settings, loopback rule), `source` (registry → verified policy), `schemas` (bodies, observation
checks), `middleware` (token, size bound), `reload` (atomic swap, alias watcher), `app` (`create_app`),
`server` (uvicorn in the foreground or a thread). Import them where needed: they load torch and FastAPI.
"""
