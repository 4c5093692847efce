"""psycopg 3 through sqlgate: simple and extended queries, binary results,
and pipeline mode with a denied statement in the middle.

Run by tests/pg_clients.rs with SQLGATE_DSN set; exits non-zero on failure.
"""
import os
import sys

import psycopg
from psycopg import errors

dsn = os.environ["SQLGATE_DSN"]

with psycopg.connect(dsn, autocommit=True) as conn:
    # Simple protocol (no parameters) and extended (with parameters).
    assert conn.execute("SELECT 40 + 2").fetchone()[0] == 42
    conn.execute("INSERT INTO items VALUES (%s, %s)", (50, "fifty"))
    assert conn.execute("SELECT name FROM items WHERE id = %s", (50,)).fetchone()[0] == "fifty"
    # Binary results.
    with conn.cursor(binary=True) as cur:
        cur.execute("SELECT id, name FROM items WHERE id = %s", (50,))
        assert cur.fetchone() == (50, "fifty")
    # A denial is a proper SQLSTATE 42501 error.
    try:
        conn.execute("DELETE FROM items")
        sys.exit("DELETE without WHERE must be refused")
    except errors.InsufficientPrivilege as e:
        assert "rule" in str(e), str(e)

    # Pipeline mode: the denial fails its Sync segment exactly as a native
    # error would (PostgreSQL rolls back the segment's implicit transaction,
    # so 51 is gone), and the next segment runs normally (52 stays).
    denied = False
    with conn.pipeline() as p:
        conn.execute("INSERT INTO items VALUES (%s, %s)", (51, "a"))
        try:
            conn.execute("DROP TABLE items")
            p.sync()
        except errors.InsufficientPrivilege:
            denied = True
        conn.execute("INSERT INTO items VALUES (%s, %s)", (52, "b"))
        p.sync()
    assert denied, "the DROP must be refused inside the pipeline"
    ids = [r[0] for r in conn.execute("SELECT id FROM items WHERE id IN (51, 52) ORDER BY id")]
    assert ids == [52], ids
    # The connection is still healthy.
    assert conn.execute("SELECT 1").fetchone()[0] == 1

print("psycopg: ok")
