//! `strata sql`: a Flight SQL session over `-e` statements, statements piped on stdin, or an
//! interactive shell (rustyline: history in `~/.strata_history`, multi-line statements,
//! backslash commands, Ctrl-C cancels the running query).
//!
//! Queries run as `GetFlightInfo` + `DoGet` per endpoint, printing batches as they arrive.
//! Statements starting with CREATE, DELETE, INSERT, DROP, UPDATE, ALTER or TRUNCATE run as
//! `CommandStatementUpdate` and print `OK, N rows affected`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, BinaryArray, BooleanArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::error::ArrowError;
use arrow_flight::decode::DecodedPayload;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetTables, CommandStatementUpdate, DoPutUpdateResult, ProstMessageExt,
};
use arrow_flight::{FlightData, FlightDescriptor, FlightInfo, IpcMessage};
use futures::StreamExt;
use prost::Message;
use rustyline::error::ReadlineError;
use tonic::transport::Channel;

use super::input::{self, Meta};
use super::output::{self, Printer};
use super::{MAX_MESSAGE_BYTES, bearer, connect, describe_flight_error, describe_status};
use crate::cli::{OutputFormat, SqlArgs};

/// Why a statement did not complete.
enum Failure {
    /// A one-line message (`Code: message`).
    Error(String),
    /// Stdout was closed (`strata sql -e ... | head`): stop quietly.
    OutputClosed,
}

fn flight(e: arrow_flight::error::FlightError) -> Failure {
    Failure::Error(describe_flight_error(&e))
}

fn output(e: ArrowError) -> Failure {
    if output::is_broken_pipe(&e) {
        Failure::OutputClosed
    } else {
        Failure::Error(format!("cannot print the result: {e}"))
    }
}

/// Where results go: stdout, or a buffer in tests.
#[derive(Clone)]
enum Out {
    Stdout,
    #[cfg(test)]
    Buffer(Arc<std::sync::Mutex<Vec<u8>>>),
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Stdout => std::io::stdout().write(buf),
            #[cfg(test)]
            Self::Buffer(b) => {
                b.lock()
                    .map_err(|_| std::io::Error::other("poisoned"))?
                    .extend_from_slice(buf);
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Stdout => std::io::stdout().flush(),
            #[cfg(test)]
            Self::Buffer(_) => Ok(()),
        }
    }
}

/// What a shell line or a script asks for.
enum Op {
    Statement(String),
    Tables,
    Describe(String),
}

pub(super) async fn run(a: &SqlArgs) -> Result<(), String> {
    let mut session = Session::connect(a).await?;
    if let Some(sql) = &a.execute {
        return session.script(sql).await;
    }
    if !std::io::stdin().is_terminal() {
        let mut sql = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut tokio::io::stdin(), &mut sql)
            .await
            .map_err(|e| format!("cannot read statements from stdin: {e}"))?;
        return session.script(&sql).await;
    }
    session.interactive(&a.client.gateway).await
}

struct Session {
    client: FlightSqlServiceClient<Channel>,
    format: OutputFormat,
    timing: bool,
    /// Timing lines go to stdout in the shell and to stderr in scripts (so that stdout holds
    /// only results).
    interactive: bool,
    out: Out,
    /// What the last query cost, as the server reported it after its last batch.
    cost: Option<serde_json::Value>,
}

impl Session {
    async fn connect(a: &SqlArgs) -> Result<Self, String> {
        let channel = connect(&a.client.gateway, &a.client.tls).await?;
        let inner = FlightServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let mut client = FlightSqlServiceClient::new_from_inner(inner);
        if let Some(value) = bearer(a.client.token.as_deref()) {
            client.set_header("authorization", value);
        }
        Ok(Self {
            client,
            format: a.format,
            timing: !a.no_timing,
            interactive: false,
            out: Out::Stdout,
            cost: None,
        })
    }

    /// Runs every statement of `sql`, stopping at the first error.
    async fn script(&mut self, sql: &str) -> Result<(), String> {
        let statements = input::split(sql).all();
        if statements.is_empty() {
            return Err("no SQL statement to run".into());
        }
        for stmt in statements {
            match self.op(&Op::Statement(stmt)).await {
                Ok(()) => {}
                Err(Failure::OutputClosed) => return Ok(()),
                Err(Failure::Error(e)) => return Err(e),
            }
        }
        Ok(())
    }

    async fn op(&mut self, op: &Op) -> Result<(), Failure> {
        let start = Instant::now();
        match op {
            Op::Statement(sql) if input::is_update(sql) => {
                let n = self.update(sql).await?;
                let mut line = match n {
                    Some(n) => format!("OK, {} affected", output::plural(n, "row")),
                    None => "OK".to_string(),
                };
                if self.timing {
                    line.push_str(&format!(" ({})", output::millis(start.elapsed())));
                }
                self.say(&line)
            }
            Op::Statement(sql) => {
                let info = self
                    .client
                    .execute(sql.clone(), None)
                    .await
                    .map_err(flight)?;
                let rows = self.print(info).await?;
                self.report(rows, start.elapsed())?;
                match self.cost.take() {
                    Some(cost) if self.timing => self.say_timing(&output::cost_line(&cost)),
                    _ => Ok(()),
                }
            }
            Op::Tables => {
                let info = self
                    .client
                    .get_tables(tables_command(None, false))
                    .await
                    .map_err(flight)?;
                let rows = self.print(info).await?;
                self.report(rows, start.elapsed())
            }
            Op::Describe(table) => {
                let columns = self.describe(table).await?;
                let mut printer = Printer::new(self.format, self.out.clone());
                printer.write(&columns).map_err(output)?;
                let (rows, _) = printer.finish().map_err(output)?;
                self.report(rows, start.elapsed())
            }
        }
    }

    /// Writes one line of output.
    fn say(&self, line: &str) -> Result<(), Failure> {
        writeln!(self.out.clone(), "{line}").map_err(|e| output(e.into()))
    }

    fn report(&self, rows: usize, elapsed: Duration) -> Result<(), Failure> {
        if !self.timing {
            return Ok(());
        }
        self.say_timing(&output::timing_line(rows, elapsed))
    }

    /// A `\timing` line: on the terminal in the shell, on stderr with `-e`.
    fn say_timing(&self, line: &str) -> Result<(), Failure> {
        if line.is_empty() {
            return Ok(());
        }
        let line = line.to_string();
        if self.interactive {
            self.say(&line)
        } else {
            eprintln!("{line}");
            Ok(())
        }
    }

    /// Fetches every endpoint of `info` and prints the batches as they arrive.
    async fn print(&mut self, info: FlightInfo) -> Result<usize, Failure> {
        let mut printer = Printer::new(self.format, self.out.clone());
        if let Ok(schema) = Schema::try_from(IpcMessage(info.schema.clone()))
            && !schema.fields().is_empty()
        {
            printer.set_schema(Arc::new(schema));
        }
        for endpoint in info.endpoint {
            let ticket = endpoint.ticket.ok_or_else(|| {
                Failure::Error("Internal: the gateway sent an endpoint without a ticket".into())
            })?;
            // Read message by message: the last one carries what the query cost
            // (`{"strata_cost": …}` as its app_metadata).
            let mut decoder = self
                .client
                .do_get(ticket)
                .await
                .map_err(flight)?
                .into_inner();
            let mut announced = None;
            while let Some(data) = decoder.next().await {
                let data = data.map_err(flight)?;
                if !data.inner.app_metadata.is_empty()
                    && let Ok(mut v) =
                        serde_json::from_slice::<serde_json::Value>(&data.inner.app_metadata)
                    && let Some(c) = v.get_mut(strata_gateway::flight::COST_METADATA_KEY)
                {
                    self.cost = Some(c.take());
                }
                match data.payload {
                    DecodedPayload::RecordBatch(batch) => {
                        printer.write(&batch).map_err(output)?;
                    }
                    DecodedPayload::Schema(schema) => announced = Some(schema),
                    DecodedPayload::None => {}
                }
            }
            if printer.rows() == 0
                && let Some(schema) = announced
            {
                printer.set_schema(schema);
            }
        }
        let (rows, _) = printer.finish().map_err(output)?;
        Ok(rows)
    }

    /// Runs DDL or DML; `None` when the server does not know the row count.
    async fn update(&mut self, sql: &str) -> Result<Option<u64>, Failure> {
        let cmd = CommandStatementUpdate {
            query: sql.to_string(),
            transaction_id: None,
        };
        let data = FlightData {
            flight_descriptor: Some(FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec())),
            ..Default::default()
        };
        let mut results = self
            .client
            .do_put(futures::stream::iter([data]))
            .await
            .map_err(flight)?;
        let result = results
            .message()
            .await
            .map_err(|s| Failure::Error(describe_status(&s)))?
            .ok_or_else(|| Failure::Error("Internal: the gateway sent no update result".into()))?;
        let result = DoPutUpdateResult::decode(result.app_metadata).map_err(|e| {
            Failure::Error(format!("Internal: cannot decode the update result: {e}"))
        })?;
        Ok(u64::try_from(result.record_count).ok())
    }

    /// One table's columns (name, type, nullable), from `GetTables` with schemas.
    async fn describe(&mut self, table: &str) -> Result<RecordBatch, Failure> {
        let info = self
            .client
            .get_tables(tables_command(Some(table), true))
            .await
            .map_err(flight)?;
        let mut found: Vec<(String, Schema)> = Vec::new();
        for endpoint in info.endpoint {
            let Some(ticket) = endpoint.ticket else {
                continue;
            };
            let mut stream = self.client.do_get(ticket).await.map_err(flight)?;
            while let Some(batch) = stream.next().await {
                found.extend(tables_with_schemas(&batch.map_err(flight)?).map_err(Failure::Error)?);
            }
        }
        let schema = pick_table(table, found).map_err(Failure::Error)?;
        columns_batch(&schema).map_err(|e| Failure::Error(format!("Internal: {e}")))
    }

    /// Runs `op`, cancelling it on Ctrl-C, and prints any error.
    async fn interruptible(&mut self, op: &Op) {
        let result = tokio::select! {
            r = self.op(op) => r,
            Ok(()) = tokio::signal::ctrl_c() => Err(Failure::Error("Cancelled".into())),
        };
        if let Err(Failure::Error(e)) = result {
            eprintln!("error: {e}");
        }
    }

    /// Handles a backslash command; false means quit.
    async fn meta(&mut self, m: Meta) -> bool {
        match m {
            Meta::Quit => return false,
            Meta::Help => println!("{}", input::HELP),
            Meta::Timing(v) => {
                self.timing = v.unwrap_or(!self.timing);
                println!("timing is {}", if self.timing { "on" } else { "off" });
            }
            Meta::Format(Some(f)) => {
                self.format = f;
                println!("format is {}", format_name(f));
            }
            Meta::Format(None) => println!("format is {}", format_name(self.format)),
            Meta::Tables => self.interruptible(&Op::Tables).await,
            Meta::Describe(t) => self.interruptible(&Op::Describe(t)).await,
            Meta::Invalid(msg) => eprintln!("error: {msg}"),
        }
        true
    }

    async fn interactive(mut self, gateway: &str) -> Result<(), String> {
        self.interactive = true;
        let config = rustyline::Config::builder()
            .max_history_size(10_000)
            .map_err(|e| format!("cannot configure the shell: {e}"))?
            .auto_add_history(false)
            .build();
        let mut editor = rustyline::DefaultEditor::with_config(config)
            .map_err(|e| format!("cannot start the shell: {e}"))?;
        let history = history_path();
        if let Some(p) = &history {
            // A missing history file is normal the first time.
            let _ = editor.load_history(p);
        }
        println!(
            "strata {} · {gateway} · statements end with `;` · \\? for help, \\q to quit",
            env!("CARGO_PKG_VERSION")
        );
        let mut buffer = String::new();
        let outcome = loop {
            let prompt = if buffer.is_empty() {
                "strata> "
            } else {
                "   ...> "
            };
            // Reading a line blocks: do it off the runtime's threads, handing the editor back.
            let read = tokio::task::spawn_blocking(move || {
                let line = editor.readline(prompt);
                (editor, line)
            })
            .await;
            let line;
            (editor, line) = match read {
                Ok(r) => r,
                Err(e) => return Err(format!("the line editor failed: {e}")),
            };
            let line = match line {
                Ok(l) => l,
                Err(ReadlineError::Interrupted) => {
                    buffer.clear();
                    continue;
                }
                Err(ReadlineError::Eof) => break Ok(()),
                Err(e) => break Err(format!("cannot read input: {e}")),
            };
            if buffer.is_empty()
                && let Some(m) = input::meta(&line)
            {
                let _ = editor.add_history_entry(line.trim());
                if !self.meta(m).await {
                    break Ok(());
                }
                continue;
            }
            buffer.push_str(&line);
            buffer.push('\n');
            let split = input::split(&buffer);
            buffer = if split.open || input::has_code(&split.rest) {
                split.rest
            } else {
                String::new()
            };
            for stmt in split.complete {
                let _ = editor.add_history_entry(format!("{stmt};"));
                self.interruptible(&Op::Statement(stmt)).await;
            }
        };
        if let Some(p) = &history
            && let Err(e) = editor.save_history(p)
        {
            eprintln!("warning: cannot save the history to {}: {e}", p.display());
        }
        outcome
    }
}

fn format_name(f: OutputFormat) -> &'static str {
    match f {
        OutputFormat::Table => "table",
        OutputFormat::Csv => "csv",
        OutputFormat::Json => "json",
    }
}

/// `~/.strata_history`.
fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".strata_history"))
}

fn tables_command(table: Option<&str>, include_schema: bool) -> CommandGetTables {
    CommandGetTables {
        catalog: None,
        db_schema_filter_pattern: None,
        table_name_filter_pattern: table.map(str::to_string),
        table_types: Vec::new(),
        include_schema,
    }
}

/// The (table name, schema) rows of a `GetTables` result with `include_schema`.
fn tables_with_schemas(batch: &RecordBatch) -> Result<Vec<(String, Schema)>, String> {
    let names = batch
        .column_by_name("table_name")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or("Internal: the GetTables result has no table_name column")?;
    let schemas = batch
        .column_by_name("table_schema")
        .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
        .ok_or("Internal: the GetTables result has no table_schema column")?;
    (0..batch.num_rows())
        .filter(|&i| names.is_valid(i) && schemas.is_valid(i))
        .map(|i| {
            let schema =
                Schema::try_from(IpcMessage(schemas.value(i).to_vec().into())).map_err(|e| {
                    format!(
                        "Internal: cannot decode the schema of {}: {e}",
                        names.value(i)
                    )
                })?;
            Ok((names.value(i).to_string(), schema))
        })
        .collect()
}

/// The table called `name`: an exact match, else the only case-insensitive one (the
/// `GetTables` pattern is a LIKE pattern, so `_` matches any character).
fn pick_table(name: &str, found: Vec<(String, Schema)>) -> Result<Schema, String> {
    let mut folded = Vec::new();
    for (table, schema) in found {
        if table == name {
            return Ok(schema);
        }
        if table.eq_ignore_ascii_case(name) {
            folded.push(schema);
        }
    }
    if folded.len() == 1
        && let Some(schema) = folded.pop()
    {
        return Ok(schema);
    }
    Err(format!(
        "NotFound: no table named {name:?} (\\d lists the tables)"
    ))
}

/// One row per column: name, type, nullable.
fn columns_batch(schema: &Schema) -> Result<RecordBatch, ArrowError> {
    let fields = schema.fields();
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("column", DataType::Utf8, false),
            Field::new("type", DataType::Utf8, false),
            Field::new("nullable", DataType::Boolean, false),
        ])),
        vec![
            Arc::new(StringArray::from_iter_values(
                fields.iter().map(|f| f.name().as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                fields.iter().map(|f| f.data_type().to_string()),
            )),
            Arc::new(BooleanArray::from(
                fields.iter().map(|f| f.is_nullable()).collect::<Vec<_>>(),
            )),
        ],
    )
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::TimeUnit;
    use arrow_flight::sql::metadata::GetTablesBuilder;
    use clap::Parser;

    use super::super::testing::{Mock, serve};
    use super::*;
    use crate::cli::{Cli, Command};

    type Buffer = Arc<std::sync::Mutex<Vec<u8>>>;

    async fn session(url: &str, format: &str) -> (Session, Buffer) {
        let cli = Cli::try_parse_from([
            "strata",
            "sql",
            "--gateway",
            url,
            "--format",
            format,
            "--no-timing",
        ])
        .unwrap();
        let Command::Sql(args) = cli.command else {
            panic!("not sql")
        };
        let mut s = Session::connect(&args).await.unwrap();
        let buffer = Buffer::default();
        s.out = Out::Buffer(Arc::clone(&buffer));
        (s, buffer)
    }

    fn take(b: &Buffer) -> String {
        String::from_utf8(std::mem::take(&mut *b.lock().unwrap())).unwrap()
    }

    #[tokio::test]
    async fn scripts_print_results_and_stop_at_the_first_error() {
        let (url, server) = serve(Mock::default()).await;
        let (mut s, out) = session(&url, "csv").await;
        s.script("select * from logs; delete from logs where n = 1;\nselect 1 where false")
            .await
            .unwrap();
        assert_eq!(
            take(&out),
            "level,n\nINFO,80\n,20\nOK, 3 rows affected\nlevel,n\n"
        );

        let e = s
            .script("select 1; select * from missing; select 2")
            .await
            .unwrap_err();
        assert_eq!(e, "InvalidArgument: table 'missing' not found");
        assert_eq!(
            take(&out),
            "level,n\nINFO,80\n,20\n",
            "only the first statement ran"
        );
        let e = s.script("drop table missing").await.unwrap_err();
        assert_eq!(e, "NotFound: table 'missing' not found");
        assert_eq!(
            s.script(" ; -- nothing").await.unwrap_err(),
            "no SQL statement to run"
        );
        server.abort();
    }

    #[tokio::test]
    async fn formats_tables_and_describes() {
        let (url, server) = serve(Mock::default()).await;
        let (mut s, out) = session(&url, "json").await;
        s.script("select * from logs").await.unwrap();
        assert_eq!(take(&out), "{\"level\":\"INFO\",\"n\":80}\n{\"n\":20}\n");
        s.format = OutputFormat::Table;
        s.op(&Op::Statement("select * from logs".into()))
            .await
            .ok()
            .unwrap();
        assert_eq!(
            take(&out),
            "+-------+----+\n| level | n  |\n+-------+----+\n| INFO  | 80 |\n|       | 20 |\n+-------+----+\n"
        );
        s.op(&Op::Tables).await.ok().unwrap();
        let tables = take(&out);
        assert!(
            tables.contains("| strata       | public         | logs       | TABLE      |"),
            "{tables}"
        );
        s.op(&Op::Describe("logs".into())).await.ok().unwrap();
        let columns = take(&out);
        assert!(
            columns.contains("| level  | Utf8  | true     |"),
            "{columns}"
        );
        assert!(
            columns.contains("| n      | Int64 | false    |"),
            "{columns}"
        );
        match s.op(&Op::Describe("nope".into())).await {
            Err(Failure::Error(e)) => {
                assert!(e.starts_with("NotFound: no table named \"nope\""), "{e}")
            }
            _ => panic!("expected an error"),
        }
        server.abort();
    }

    #[tokio::test]
    async fn connecting_to_nothing_fails_fast() {
        let cli = Cli::try_parse_from(["strata", "sql", "--gateway", "127.0.0.1:1"]).unwrap();
        let Command::Sql(args) = cli.command else {
            panic!("not sql")
        };
        let e = Session::connect(&args).await.err().unwrap();
        assert!(
            e.starts_with("cannot connect to the gateway at http://127.0.0.1:1"),
            "{e}"
        );
    }

    fn logs_schema() -> Schema {
        Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("level", DataType::Utf8, true),
        ])
    }

    #[test]
    fn describes_a_table_from_get_tables() {
        let mut b: GetTablesBuilder = tables_command(Some("logs"), true).into_builder();
        b.append("strata", "public", "logs", "TABLE", &logs_schema())
            .unwrap();
        let found = tables_with_schemas(&b.build().unwrap()).unwrap();
        let schema = pick_table("logs", found).unwrap();
        let batch = columns_batch(&schema).unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&[batch])
            .unwrap()
            .to_string();
        assert!(
            text.contains("| ts     | Timestamp(µs) | false    |"),
            "{text}"
        );
        assert!(
            text.contains("| level  | Utf8          | true     |"),
            "{text}"
        );
    }

    #[test]
    fn picks_the_exact_table() {
        let found = vec![
            ("logs".to_string(), Schema::empty()),
            ("LOGS".to_string(), logs_schema()),
        ];
        assert_eq!(pick_table("LOGS", found.clone()).unwrap(), logs_schema());
        assert_eq!(pick_table("logs", found.clone()).unwrap(), Schema::empty());
        assert!(
            pick_table("Logs", found)
                .unwrap_err()
                .starts_with("NotFound")
        );
        assert_eq!(
            pick_table("Logs", vec![("logs".into(), logs_schema())]).unwrap(),
            logs_schema()
        );
    }
}
