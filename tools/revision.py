"""`python -m tools.revision <service> "what changes"`: drafts the service's next Alembic revision
from its declared tables (services/<service>/tables.py), as autogenerate finds them against a
scratch database migrated to the newest revision (CHECKOUT_DATABASE_URL's server, database
`checkout_revision_<service>`, dropped afterwards). Read the draft and finish it by hand."""

from __future__ import annotations

import argparse
import asyncio
import importlib

import asyncpg

from libs.common.config import Config, with_database
from libs.common.schema import write_revision


async def draft(service: str, message: str, database_url: str) -> None:
    scratch = f"checkout_revision_{service}"
    dsn = with_database(database_url, scratch)
    metadata = importlib.import_module(f"services.{service}.tables").metadata
    spec = importlib.import_module(f"services.{service}.service").SPEC
    try:
        path = await write_revision(dsn, service, spec.service_dir, metadata, message)
    finally:
        admin = await asyncpg.connect(database_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{scratch}"')
        finally:
            await admin.close()
    print(path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("service", choices=["merchant", "invoice", "customer", "analytics"])
    parser.add_argument("message", help="what the revision changes, in a few words")
    args = parser.parse_args()
    asyncio.run(draft(args.service, args.message, Config.from_env().database_url))


if __name__ == "__main__":
    main()
