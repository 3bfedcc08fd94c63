"""The ledger is append-only in the database itself: UPDATE and DELETE of an entry fail."""

from django.db import migrations

POSTGRES_UP = """
CREATE OR REPLACE FUNCTION loyalty_ledger_entry_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'loyalty_ledgerentry is append-only: % refused', TG_OP USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER loyalty_ledgerentry_append_only
    BEFORE UPDATE OR DELETE ON loyalty_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION loyalty_ledger_entry_append_only();
"""
POSTGRES_DOWN = """
DROP TRIGGER IF EXISTS loyalty_ledgerentry_append_only ON loyalty_ledgerentry;
DROP FUNCTION IF EXISTS loyalty_ledger_entry_append_only();
"""
SQLITE_UP = [
    """CREATE TRIGGER loyalty_ledgerentry_no_update BEFORE UPDATE ON loyalty_ledgerentry
       BEGIN SELECT RAISE(ABORT, 'loyalty_ledgerentry is append-only: UPDATE refused'); END;""",
    """CREATE TRIGGER loyalty_ledgerentry_no_delete BEFORE DELETE ON loyalty_ledgerentry
       BEGIN SELECT RAISE(ABORT, 'loyalty_ledgerentry is append-only: DELETE refused'); END;""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS loyalty_ledgerentry_no_update;",
    "DROP TRIGGER IF EXISTS loyalty_ledgerentry_no_delete;",
]


def forwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_UP, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_UP:
            schema_editor.execute(statement)


def backwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_DOWN, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_DOWN:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("loyalty", "0003_wallets")]

    operations = [migrations.RunPython(forwards, backwards)]
