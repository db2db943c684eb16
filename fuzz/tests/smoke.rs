//! The fuzz targets' smoke run, in every `cargo test`: each target gets its seed corpus
//! (`fuzz/corpus/<target>/`, plus seeds built here from real encoders) and then
//! `STRATA_FUZZ_ITERS` (default 3,000) mutations of it drawn from a fixed seed. A panic
//! fails the test and prints the input as hex. Coverage-guided runs use cargo-fuzz
//! (fuzz/README.md); inputs they find belong in the corpus folder, so this test replays them.
//!
//! `STRATA_FUZZ_WRITE_CORPUS=1` writes the built seeds into the corpus folders.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow_flight::sql::{Any, CommandStatementQuery, ProstMessageExt, TicketStatementQuery};
use arrow_flight::{FlightData, FlightDescriptor};
use futures::TryStreamExt;
use prost::Message;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

fn sample_batch() -> RecordBatch {
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("host", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ])),
        vec![
            Arc::new(TimestampMicrosecondArray::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])),
            Arc::new(Int64Array::from(vec![Some(7), Some(-1), None])),
        ],
    )
    .expect("batch")
}

fn flight_messages(batch: RecordBatch) -> Vec<FlightData> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(
        arrow_flight::encode::FlightDataEncoderBuilder::new()
            .build(futures::stream::iter([Ok(batch)]))
            .try_collect::<Vec<_>>(),
    )
    .expect("encode")
}

/// Seeds from the real encoders, per target.
fn built_seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "ipc_upload" => vec![strata_gateway::flight::fuzzing::frame_upload(
            &flight_messages(sample_batch()),
        )],
        "json_lines" => vec![
            b"{\"ts\":\"2026-01-01T00:00:00Z\",\"host\":\"a\",\"n\":1}\n{\"ts\":\"2026-01-01T00:00:01Z\",\"host\":null,\"n\":2.5,\"tags\":{\"k\":[1,2]}}\n".to_vec(),
            b"{\"time\":1764410400000000,\"msg\":\"x\"}\n\n{\"time\":1,\"msg\":\"y\"}".to_vec(),
        ],
        "put_descriptor" => vec![
            FlightDescriptor::new_path(vec!["logs".into()]).encode_to_vec(),
            FlightDescriptor::new_cmd(
                br#"{"table":"t","producer_id":"p","sequence":3,"durability":"buffered"}"#.to_vec(),
            )
            .encode_to_vec(),
            FlightDescriptor::new_cmd(
                CommandStatementQuery {
                    query: "SELECT 1".into(),
                    transaction_id: None,
                }
                .as_any()
                .encode_to_vec(),
            )
            .encode_to_vec(),
        ],
        "ticket" => vec![
            TicketStatementQuery {
                statement_handle: br#"{"sql":"SELECT count(*) FROM logs"}"#.to_vec().into(),
            }
            .as_any()
            .encode_to_vec(),
            br#"{"log":{"table":"logs","shard":2,"from_offset":10,"max_rows":5,"follow":false}}"#
                .to_vec(),
            Any {
                type_url: "type.googleapis.com/unknown".into(),
                value: vec![1, 2, 3].into(),
            }
            .encode_to_vec(),
        ],
        "wal_entry" => {
            let b = sample_batch();
            let header = strata_storage::wal::WalHeader {
                epoch: 1,
                writer: "w".into(),
                seq: 4,
                first_offset: 10,
                rows: 3,
                producers: [("p".to_string(), 9)].into_iter().collect(),
                attempt: 2,
            };
            vec![
                strata_storage::wal::encode(&header, &b.schema(), &[b])
                    .expect("encode")
                    .to_vec(),
            ]
        }
        "manifest" => vec![
            serde_json::to_vec(&serde_json::json!({
                "format": 1, "version": 3, "commit_id": "c", "committed_at_ms": 1,
                "table": {"name": "t", "schema": {"fields": [], "metadata": {}},
                          "time_column": null, "shard_key": null, "num_shards": 1,
                          "retention_secs": null, "bloom_columns": [], "created_at_ms": 0},
                "segments": [], "shards": {"0": {}}, "deletes": [], "next_delete_id": 1
            }))
            .expect("json"),
        ],
        _ => Vec::new(),
    }
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let mut seeds = built_seeds(target);
    if let Ok(dir) = std::fs::read_dir(corpus_dir(target)) {
        let mut files: Vec<PathBuf> = dir.filter_map(|e| Some(e.ok()?.path())).collect();
        files.sort();
        seeds.extend(files.iter().filter_map(|p| std::fs::read(p).ok()));
    }
    seeds
}

/// xorshift64*: small, fixed, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = [0, 0xff, 0x7f, 0x80, b'{', b'"', b'[', b'9'][rng.below(8)];
            }
            2 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                input.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below(len - i);
                input.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                let copy = input[i..i + n].to_vec();
                let at = rng.below(input.len() + 1);
                input.splice(at..at, copy);
            }
            5 => input.truncate(rng.below(len + 1)),
            _ if !other.is_empty() => {
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                input.truncate(cut);
                input.extend_from_slice(&other[from..]);
            }
            _ => {}
        }
    }
}

#[test]
fn every_target_survives_its_corpus_and_mutations() {
    let iters: usize = std::env::var("STRATA_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    let write = std::env::var_os("STRATA_FUZZ_WRITE_CORPUS").is_some();
    // Dependencies' decoders panic on some malformed input and Strata contains those panics
    // (they become errors); keep them from flooding the output. A panic that escapes a
    // target is reported below with its input.
    std::panic::set_hook(Box::new(|_| {}));
    let mut total = 0usize;
    for (i, (name, target)) in strata_fuzz::TARGETS.iter().enumerate() {
        if write {
            let dir = corpus_dir(name);
            std::fs::create_dir_all(&dir).expect("corpus dir");
            for (j, seed) in built_seeds(name).iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{j}")), seed).expect("write seed");
            }
        }
        let seeds = corpus(name);
        assert!(!seeds.is_empty(), "no seeds for {name}");
        let run = |input: &[u8]| {
            if let Err(payload) = std::panic::catch_unwind(|| target(input)) {
                drop(std::panic::take_hook()); // the default hook again, for the report
                let why = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!(
                    "fuzz target {name} panicked ({why}) on input {}",
                    input.iter().map(|b| format!("{b:02x}")).collect::<String>()
                );
            }
        };
        for s in &seeds {
            run(s);
        }
        let mut rng = Rng(0x5eed_0000 + i as u64);
        for _ in 0..iters {
            let mut input = seeds[rng.below(seeds.len())].clone();
            let other = &seeds[rng.below(seeds.len())];
            mutate(&mut rng, &mut input, other);
            run(&input);
        }
        total += seeds.len() + iters;
    }
    eprintln!(
        "fuzz smoke: {total} executions over {} targets",
        strata_fuzz::TARGETS.len()
    );
}
