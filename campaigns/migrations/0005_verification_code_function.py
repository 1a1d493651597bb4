"""On PostgreSQL, a function that makes verification codes, so a launch is one INSERT … SELECT.

Ten characters of Crockford's base32 (50 bits) from gen_random_uuid(), which
draws on the server's strong random source. Bytes 6 and 8 of a UUID carry its
version and variant, so they are skipped.
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION amends_verification_code() RETURNS text AS $$
    SELECT string_agg(
        substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', (get_byte(r.b, i) & 31) + 1, 1), ''
        ORDER BY i
    )
    FROM (SELECT uuid_send(gen_random_uuid()) AS b) r,
         unnest(ARRAY[0, 1, 2, 3, 4, 5, 7, 9, 10, 11]) AS i
$$ LANGUAGE sql VOLATILE PARALLEL SAFE;
"""
BACKWARD = "DROP FUNCTION IF EXISTS amends_verification_code();"


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0004_sending")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
