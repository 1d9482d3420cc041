"""Full-text search: Postgres GIN indexes, and LIKE on SQLite.

Two forms. A small table (prompts) indexes the expression
`to_tsvector(config, left(field, SEARCH_CHARS))`, and a query builds the very
same expression (`search_vector`) for Postgres to use the index. The rollout
table stores the vector in a generated column (`stored_search_vector`) with the
index on it: Postgres costs a to_tsvector call as cheap, so with an expression
index it would happily re-parse a kilobyte of text per row while walking the
table in id order; reading a stored vector costs microseconds.
"""

from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db import connection, migrations
from django.db.models import Q
from django.db.models.functions import Left

# At most this much of a text is indexed: to_tsvector refuses a vector over 1 MB,
# and a 5 MB degenerate completion should not cost 5 MB of index.
SEARCH_CHARS = 100_000
SEARCH_CONFIG = "english"


def search_vector(field: str) -> SearchVector:
    return SearchVector(Left(field, SEARCH_CHARS), config=SEARCH_CONFIG)


class StoredSearchVector(SearchVector):
    """A GeneratedField's expression: the vector on Postgres; SQLite has no to_tsvector, the column stays NULL."""

    def as_sqlite(self, compiler, connection, **extra_context):
        return "NULL", []


def stored_search_vector(field: str) -> StoredSearchVector:
    return StoredSearchVector(Left(field, SEARCH_CHARS), config=SEARCH_CONFIG)


def match_stored(column: str, text_field: str, query: str) -> Q:
    """Rows whose stored vector `column` matches; on SQLite, whose `text_field` holds every word."""
    if connection.vendor != "postgresql":
        return like_all_words(text_field, query)
    return Q(**{column: _query(query)})


def matches(queryset, field: str, query: str):
    """Rows of `queryset` whose `field` matches `query` (web-search syntax: words, "phrases", -not, or)."""
    if connection.vendor != "postgresql":
        return queryset.filter(like_all_words(field, query))
    alias = f"_search_{field}"
    return queryset.alias(**{alias: search_vector(field)}).filter(**{alias: _query(query)})


def _query(query: str) -> SearchQuery:
    return SearchQuery(query, search_type="websearch", config=SEARCH_CONFIG)


def like_all_words(field: str, query: str) -> Q:
    """The SQLite fallback: every word (quotes and a leading '-' dropped) appears, case-insensitively."""
    condition = Q()
    for word in query.replace('"', " ").split():
        word = word.lstrip("-")
        if word and word.lower() != "or":
            condition &= Q(**{f"{field}__icontains": word})
    return condition


class AddIndexOnPostgres(migrations.AddIndex):
    """AddIndex for a Postgres-only index (GIN): recorded in the model state everywhere, built only on Postgres."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class AddFieldInPlace(migrations.AddField):
    """AddField that on SQLite adds the column in place (ADD COLUMN with a constant default). For a NOT NULL
    field Django would rebuild the table there, and the rebuild recreates every index of the model state,
    the Postgres-only ones too (a GIN over a search vector is not SQL SQLite can read)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "sqlite":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = to_state.apps.get_model(app_label, self.model_name)
        field = model._meta.get_field(self.name)
        definition, _ = schema_editor.column_sql(model, field)
        default = schema_editor.quote_value(schema_editor.effective_default(field))
        schema_editor.execute(f"ALTER TABLE {schema_editor.quote_name(model._meta.db_table)} ADD COLUMN "
                              f"{schema_editor.quote_name(field.column)} {definition} DEFAULT {default}")
