"""On PostgreSQL, the database itself refuses to change or remove audit entries.

TRUNCATE is refused while the table holds entries; emptying an empty table
(as a test database flush does) changes nothing and is let through.
"""

from django.db import migrations

TABLE = "incidents_auditentry"

FORWARD = f"""
CREATE OR REPLACE FUNCTION amends_audit_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        IF NOT EXISTS (SELECT 1 FROM {TABLE}) THEN
            RETURN NULL;
        END IF;
    END IF;
    -- No percent-sign placeholders: the migration runs this text through the DB driver.
    RAISE EXCEPTION USING
        MESSAGE = 'audit entries are append-only: ' || TG_OP || ' refused on ' || TG_TABLE_NAME,
        ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER amends_audit_no_update_delete
    BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION amends_audit_append_only();

CREATE TRIGGER amends_audit_no_truncate
    BEFORE TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION amends_audit_append_only();
"""

BACKWARD = f"""
DROP TRIGGER IF EXISTS amends_audit_no_update_delete ON {TABLE};
DROP TRIGGER IF EXISTS amends_audit_no_truncate ON {TABLE};
DROP FUNCTION IF EXISTS amends_audit_append_only();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("incidents", "0001_initial")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
