"""On PostgreSQL, the database itself refuses to change message versions and decisions.

Approvals bind a version's content hash, so an altered version already stops
counting as approved; this makes the alteration itself fail. Rows can still be
deleted by the database owner (a test flush, a restore); the models refuse it.
"""

from django.db import migrations

TABLES = ("campaigns_messageversion", "campaigns_approval")

FUNCTION = """
CREATE OR REPLACE FUNCTION amends_message_immutable() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION USING
        MESSAGE = TG_TABLE_NAME || ' rows are never changed; save a new version instead',
        ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(FUNCTION)
    for table in TABLES:
        schema_editor.execute(
            f"CREATE TRIGGER amends_no_update BEFORE UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION amends_message_immutable()"
        )


def backward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS amends_no_update ON {table}")
    schema_editor.execute("DROP FUNCTION IF EXISTS amends_message_immutable()")


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0002_messages")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
