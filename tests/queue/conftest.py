from tests.storage.fixtures import database, database_url  # noqa: F401 (fixtures)
