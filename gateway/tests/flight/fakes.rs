//! In-process backends over `Vec<RecordBatch>`: just enough SQL to exercise the gateway.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use futures::StreamExt;
use parking_lot::Mutex;
use strata_gateway::{
    BackendError, BatchStream, Caller, ErrorKind, IngestBackend, LogRequest, QueryBackend,
    QueryRequest, ShardAck, WriteAck, WriteRequest,
};

pub(crate) fn logs_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("level", DataType::Utf8, false),
        Field::new("message", DataType::Utf8, false),
    ]))
}

pub(crate) fn logs_batch(ids: &[i64], levels: &[&str]) -> RecordBatch {
    let messages: Vec<String> = ids.iter().map(|i| format!("message {i}")).collect();
    RecordBatch::try_new(
        logs_schema(),
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(levels.to_vec())),
            Arc::new(StringArray::from(messages)),
        ],
    )
    .expect("logs batch")
}

fn services_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "service",
        DataType::Utf8,
        false,
    )]))
}

/// Tables per tenant; records every request.
pub(crate) struct FakeQuery {
    tables: HashMap<(Option<String>, String), (SchemaRef, Vec<RecordBatch>)>,
    pub(crate) seen: Mutex<Vec<QueryRequest>>,
}

impl FakeQuery {
    /// `logs` (4 rows in 2 batches) and `services` for the default tenant, `acme` and
    /// `globex`; `acme` alone also has `acme_only`.
    pub(crate) fn new() -> Self {
        let mut tables = HashMap::new();
        for tenant in [None, Some("acme".to_string()), Some("globex".to_string())] {
            let logs = vec![
                logs_batch(&[1, 2], &["INFO", "ERROR"]),
                logs_batch(&[3, 4], &["INFO", "ERROR"]),
            ];
            tables.insert((tenant.clone(), "logs".to_string()), (logs_schema(), logs));
            tables.insert(
                (tenant, "services".to_string()),
                (services_schema(), vec![]),
            );
        }
        tables.insert(
            (Some("acme".to_string()), "acme_only".to_string()),
            (services_schema(), vec![]),
        );
        Self {
            tables,
            seen: Mutex::new(Vec::new()),
        }
    }

    fn run(&self, req: &QueryRequest) -> Result<(SchemaRef, Vec<RecordBatch>), BackendError> {
        let sql = req.sql.trim();
        let upper = sql.to_ascii_uppercase();
        if ["DELETE", "CREATE", "INSERT"]
            .iter()
            .any(|k| upper.starts_with(k))
        {
            let schema = Arc::new(Schema::new(vec![Field::new(
                "count",
                DataType::UInt64,
                false,
            )]));
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(UInt64Array::from(vec![3u64]))],
            )
            .expect("count batch");
            return Ok((schema, vec![batch]));
        }
        let Some(rest) = upper.strip_prefix("SELECT * FROM ") else {
            return Err(BackendError::new(
                ErrorKind::InvalidArgument,
                format!("fake cannot run `{sql}`"),
            ));
        };
        let table = rest
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let (schema, batches) = self
            .tables
            .get(&(req.caller.tenant.clone(), table.clone()))
            .cloned()
            .ok_or_else(|| {
                BackendError::new(ErrorKind::NotFound, format!("table `{table}` not found"))
            })?;
        if !upper.contains("WHERE LEVEL = $1") {
            return Ok((schema, batches));
        }
        let params = req.params.as_ref().ok_or_else(|| {
            BackendError::new(ErrorKind::InvalidArgument, "no value for placeholder $1")
        })?;
        let wanted = params.column(0).as_string::<i32>().value(0).to_string();
        let filtered = batches
            .iter()
            .map(|b| {
                let level = b.column(1).as_string::<i32>();
                let mask = level
                    .iter()
                    .map(|l| Some(l == Some(wanted.as_str())))
                    .collect();
                filter_record_batch(b, &mask).expect("filter")
            })
            .collect();
        Ok((schema, filtered))
    }
}

#[async_trait::async_trait]
impl QueryBackend for FakeQuery {
    async fn execute(&self, req: QueryRequest) -> Result<(SchemaRef, BatchStream), BackendError> {
        self.seen.lock().push(req.clone());
        let (schema, batches) = self.run(&req)?;
        Ok((
            schema,
            futures::stream::iter(batches.into_iter().map(Ok)).boxed(),
        ))
    }

    async fn schema(&self, req: QueryRequest) -> Result<SchemaRef, BackendError> {
        self.seen.lock().push(req.clone());
        // Planning does not need parameter values.
        let mut probe = req.clone();
        if probe.params.is_none() {
            probe.params = Some(
                RecordBatch::try_from_iter([("$1", Arc::new(StringArray::from(vec!["?"])) as _)])
                    .expect("probe"),
            );
        }
        self.run(&probe).map(|(schema, _)| schema)
    }

    async fn list_tables(&self, caller: &Caller) -> Result<Vec<(String, SchemaRef)>, BackendError> {
        Ok(self
            .tables
            .iter()
            .filter(|((tenant, _), _)| *tenant == caller.tenant)
            .map(|((_, name), (schema, _))| (name.clone(), Arc::clone(schema)))
            .collect())
    }
}

/// Records writes; serves log reads from what was written.
#[derive(Default)]
pub(crate) struct FakeIngest {
    pub(crate) writes: Mutex<Vec<WriteRequest>>,
}

#[async_trait::async_trait]
impl IngestBackend for FakeIngest {
    async fn write(&self, req: WriteRequest) -> Result<WriteAck, BackendError> {
        let rows: u64 = req.batches.iter().map(|b| b.num_rows() as u64).sum();
        let mut writes = self.writes.lock();
        let before: u64 = writes
            .iter()
            .flat_map(|w| &w.batches)
            .map(|b| b.num_rows() as u64)
            .sum();
        writes.push(req);
        Ok(WriteAck {
            rows,
            shards: vec![ShardAck {
                shard: 0,
                first_offset: before,
                last_offset: before + rows - 1,
            }],
            duplicate: false,
        })
    }

    async fn read_log(&self, req: LogRequest) -> Result<BatchStream, BackendError> {
        let writes = self.writes.lock();
        let mut out = Vec::new();
        let mut offset = 0u64;
        for batch in writes
            .iter()
            .filter(|w| w.table == req.table)
            .flat_map(|w| &w.batches)
        {
            let ids = batch
                .column(0)
                .as_primitive::<arrow::datatypes::Int64Type>();
            for i in 0..batch.num_rows() {
                if offset >= req.from_offset && out.len() < req.max_rows {
                    out.push((offset, ids.value(i)));
                }
                offset += 1;
            }
        }
        if out.is_empty() {
            return Ok(futures::stream::empty().boxed());
        }
        let batch = RecordBatch::try_from_iter([
            (
                "_offset",
                Arc::new(UInt64Array::from_iter_values(out.iter().map(|o| o.0))) as Arc<dyn Array>,
            ),
            (
                "id",
                Arc::new(Int64Array::from_iter_values(out.iter().map(|o| o.1))) as _,
            ),
        ])
        .expect("log batch");
        Ok(futures::stream::iter([Ok(batch)]).boxed())
    }
}
