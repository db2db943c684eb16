"""Drives a running Strata gateway with pyarrow.flight and the ADBC Flight SQL driver.

Usage: python3 clients.py HOST:PORT WRITER_TENANT WRITER_TOKEN
Run by the ignored test `interop::python_clients` (cargo test -p strata-gateway -- --ignored).
Exits non-zero on the first failed check.
"""

import json
import sys

import pyarrow as pa
import pyarrow.flight as flight
import adbc_driver_flightsql.dbapi as adbc
from adbc_driver_flightsql import DatabaseOptions

addr, tenant, token = sys.argv[1], sys.argv[2], sys.argv[3]
uri = f"grpc://{addr}"


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


table = pa.table(
    {
        "id": pa.array([100, 101, 102], pa.int64()),
        "level": pa.array(["INFO", "WARN", "ERROR"]),
        "message": pa.array(["a", "b", "c"]),
    }
)

# --- pyarrow.flight ---------------------------------------------------------------------
client = flight.FlightClient(uri)
health = list(client.do_action(flight.Action("strata.health", b"")))
check(json.loads(health[0].body.to_pybytes()) == {"status": "ok"}, "health needs no token")
try:
    client.do_get(flight.Ticket(b'{"log": {"table": "logs"}}')).read_all()
    check(False, "unauthenticated calls are refused")
except flight.FlightUnauthenticatedError as e:
    check("missing bearer token" in str(e), "unauthenticated calls are refused")

auth_header = client.authenticate_basic_token(tenant, token)
check(auth_header[1] == f"Bearer {token}".encode(), "basic handshake returns the bearer token")
opts = flight.FlightCallOptions(
    headers=[auth_header, (b"x-strata-producer-id", b"py-producer"), (b"x-strata-sequence", b"5")]
)


writer, reader = client.do_put(flight.FlightDescriptor.for_path("logs"), table.schema, opts)
writer.write_table(table)
writer.done_writing()
ack = json.loads(reader.read().to_pybytes())
writer.close()
check(ack["rows"] == 3 and ack["shards"][0]["first_offset"] == 0, f"do_put ack {ack}")

cmd = json.dumps({"table": "logs", "durability": "buffered"}).encode()
writer, reader = client.do_put(flight.FlightDescriptor.for_command(cmd), table.schema, opts)
writer.write_table(table)
writer.done_writing()
ack = json.loads(reader.read().to_pybytes())
writer.close()
check(ack["rows"] == 3, "do_put with a JSON command")

ticket = json.dumps({"log": {"table": "logs", "shard": 0, "from_offset": 1, "max_rows": 3}})
log = client.do_get(flight.Ticket(ticket.encode()), opts).read_all()
check(log.column("_offset").to_pylist() == [1, 2, 3], f"log read offsets {log.column('_offset')}")

# --- ADBC Flight SQL ----------------------------------------------------------------------
conn = adbc.connect(
    uri, db_kwargs={DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token}"}
)
info = conn.adbc_get_info()
check(info.get("vendor_name") == "Strata", f"adbc_get_info vendor {info.get('vendor_name')}")

cur = conn.cursor()
cur.execute("SELECT * FROM logs")
t = cur.fetch_arrow_table()
check(t.num_rows == 4 and t.column_names == ["id", "level", "message"], "ADBC query")

cur.execute("SELECT * FROM logs WHERE level = $1", parameters=("ERROR",))
t = cur.fetch_arrow_table()
check(t.column("level").to_pylist() == ["ERROR", "ERROR"], "ADBC query with a parameter")

schema = conn.adbc_get_table_schema("logs")
check(schema.names == ["id", "level", "message"], "adbc_get_table_schema")

objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
names = sorted(
    t["table_name"]
    for c in objects
    for s in (c["catalog_db_schemas"] or [])
    for t in (s["db_schema_tables"] or [])
)
check(names == ["logs", "services"], f"adbc_get_objects tables {names}")

types = conn.adbc_get_table_types()
check(types == ["TABLE", "VIEW"], f"table types {types}")

rows = cur.adbc_ingest("logs", table, mode="append")
check(rows == 3, f"adbc_ingest rows {rows}")

cur.executemany("DELETE FROM logs WHERE id = $1", [(1,), (2,)])
check(cur.rowcount == 6, f"executemany rowcount {cur.rowcount}")

cur.close()
conn.close()

# Username/password: the driver trades them for a bearer token in a Flight handshake.
with adbc.connect(uri, db_kwargs={"username": tenant, "password": token}) as conn:
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM logs")
        check(cur.fetch_arrow_table().num_rows == 4, "ADBC with username/password")
try:
    with adbc.connect(uri, db_kwargs={"username": tenant, "password": "wrong"}) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM logs")
            cur.fetch_arrow_table()
    check(False, "ADBC with a wrong password is refused")
except adbc.Error as e:
    check("invalid token" in str(e) or "Unauthenticated" in str(e), f"ADBC wrong password: {e}")

print("all python client checks passed")
