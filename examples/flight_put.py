"""Write rows to Strata with pyarrow.flight DoPut, then read them back as a log.

    python3 examples/flight_put.py grpc://127.0.0.1:50051
"""
import json
import sys

import pyarrow as pa
import pyarrow.flight as fl

uri = sys.argv[1] if len(sys.argv) > 1 else "grpc://127.0.0.1:50051"
client = fl.FlightClient(uri)

now_us = 1_764_410_400_000_000
batch = pa.record_batch({
    "ts": pa.array([now_us + i * 1000 for i in range(1000)], pa.timestamp("us")),
    "host": [f"web-{i % 5}" for i in range(1000)],
    "status": pa.array([200 if i % 10 else 500 for i in range(1000)], pa.int32()),
    "latency_ms": [float(i % 97) for i in range(1000)],
})

# The descriptor names the table; it is created on first write. The producer id and sequence
# make a retried write apply once.
options = fl.FlightCallOptions(headers=[(b"x-strata-producer-id", b"example"), (b"x-strata-sequence", b"1")])
writer, reader = client.do_put(fl.FlightDescriptor.for_path("web"), batch.schema, options=options)
writer.write_batch(batch)
writer.done_writing()
ack = json.loads(reader.read().to_pybytes())
writer.close()
print("acknowledged", ack["rows"], "rows; shards:", [s["shard"] for s in ack["shards"]])

# Read shard 0 of the table as a log, from offset 0.
ticket = fl.Ticket(json.dumps({"log": {"table": "web", "shard": ack["shards"][0]["shard"], "from_offset": 0, "max_rows": 10}}).encode())
log = client.do_get(ticket).read_all()
print("log rows:", log.num_rows, "first offsets:", log.column("_offset").to_pylist()[:3])
assert ack["rows"] == 1000
assert log.column("_offset").to_pylist()[0] == 0
