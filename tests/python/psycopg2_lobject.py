"""psycopg2's large-object API through sqlgate (libpq's lo_* calls use the
fast-path FunctionCall message): create, write, seek, read, truncate, unlink.

Run by tests/pg_clients.rs with SQLGATE_DSN set; prints the OID it left
behind (for the test to check on the server) and exits non-zero on failure.
"""
import os

import psycopg2

conn = psycopg2.connect(os.environ["SQLGATE_DSN"])
lo = conn.lobject(0, "wb")
oid = lo.oid
assert lo.write(b"hello, large object") == 19
lo.seek(7)
assert lo.tell() == 7
assert lo.write(b"LARGE") == 5
lo.close()
conn.commit()

lo = conn.lobject(oid, "rb")
assert lo.read() == b"hello, LARGE object"
lo.seek(-6, 2)
assert lo.read() == b"object"
lo.close()
conn.commit()

lo = conn.lobject(oid, "wb")
lo.truncate(5)
lo.close()
conn.commit()
assert conn.lobject(oid, "rb").read() == b"hello"
conn.commit()

gone = conn.lobject(0, "wb")
gone_oid = gone.oid
gone.close()
gone.unlink()
conn.commit()
print(oid, gone_oid)
