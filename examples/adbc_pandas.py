"""Query Strata with the ADBC Flight SQL driver into pandas.

    python3 examples/adbc_pandas.py grpc://127.0.0.1:50051
"""
import sys

from adbc_driver_flightsql import dbapi

uri = sys.argv[1] if len(sys.argv) > 1 else "grpc://127.0.0.1:50051"
with dbapi.connect(uri) as conn:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT host, count(*) AS requests, avg(latency_ms) AS avg_ms, "
            "sum(CASE WHEN status >= 500 THEN 1 ELSE 0 END) AS errors "
            "FROM web GROUP BY host ORDER BY host"
        )
        df = cur.fetch_df()
    print(df.to_string(index=False))
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM web WHERE host = ?", parameters=("web-1",))
        (n,) = cur.fetchone()
    print("web-1 requests:", n)
assert len(df) == 5 and int(df["requests"].sum()) == 1000
assert n == 200
