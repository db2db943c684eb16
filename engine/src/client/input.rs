//! What the user typed: statements split at `;` (outside quotes and comments), the kind of
//! each statement, and the shell's backslash commands.

use crate::cli::OutputFormat;

/// Statements terminated by `;`, and what follows the last `;`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Split {
    /// Complete statements, trimmed, without the `;`; comment-only pieces are dropped.
    pub(super) complete: Vec<String>,
    /// The unterminated tail, as typed.
    pub(super) rest: String,
    /// The text ends inside a quoted string or a block comment.
    pub(super) open: bool,
}

impl Split {
    /// Every statement, counting an unterminated tail that holds code as the last one.
    pub(super) fn all(mut self) -> Vec<String> {
        if has_code(&self.rest) {
            self.complete.push(self.rest.trim().to_string());
        }
        self.complete
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Code,
    Single,
    Double,
    LineComment,
    BlockComment,
}

/// Walks `sql` and calls `f(byte index, char, state)` with the state each char belongs to:
/// quote characters belong to their string, comment markers to their comment. A doubled
/// quote inside a string leaves and re-enters it, which needs no special case.
fn scan(sql: &str, mut f: impl FnMut(usize, char, State)) -> State {
    let mut state = State::Code;
    let mut chars = sql.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map(|&(_, n)| n);
        // (state of this char, state after it, whether it takes the next char along)
        let (this, after, pair) = match (state, c) {
            (State::Code, '\'') => (State::Single, State::Single, false),
            (State::Code, '"') => (State::Double, State::Double, false),
            (State::Code, '-') if next == Some('-') => {
                (State::LineComment, State::LineComment, true)
            }
            (State::Code, '/') if next == Some('*') => {
                (State::BlockComment, State::BlockComment, true)
            }
            (State::Single, '\'') | (State::Double, '"') => (state, State::Code, false),
            (State::LineComment, '\n') => (state, State::Code, false),
            (State::BlockComment, '*') if next == Some('/') => (state, State::Code, true),
            (s, _) => (s, s, false),
        };
        f(i, c, this);
        if pair && let Some((j, n)) = chars.next() {
            f(j, n, this);
        }
        state = after;
    }
    state
}

/// Splits `sql` at every `;` that is outside quotes and comments.
pub(super) fn split(sql: &str) -> Split {
    let mut complete = Vec::new();
    let mut start = 0;
    let end = scan(sql, |i, c, state| {
        if state == State::Code && c == ';' {
            let stmt = &sql[start..i];
            if has_code(stmt) {
                complete.push(stmt.trim().to_string());
            }
            start = i + 1;
        }
    });
    Split {
        complete,
        rest: sql[start..].to_string(),
        open: matches!(end, State::Single | State::Double | State::BlockComment),
    }
}

/// `sql` with every comment character replaced by a space.
fn without_comments(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    scan(sql, |_, c, state| match state {
        State::LineComment | State::BlockComment => out.push(' '),
        _ => out.push(c),
    });
    out
}

/// True if `sql` holds anything but whitespace and comments.
pub(super) fn has_code(sql: &str) -> bool {
    !without_comments(sql).trim().is_empty()
}

/// The first word of code (upper-cased), skipping whitespace and comments.
fn first_word(sql: &str) -> Option<String> {
    let code = without_comments(sql);
    let word: String = code
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!word.is_empty()).then(|| word.to_ascii_uppercase())
}

/// Statements run with `CommandStatementUpdate` (they return a row count, not rows).
const UPDATE_KEYWORDS: &[&str] = &[
    "CREATE", "DELETE", "INSERT", "DROP", "UPDATE", "ALTER", "TRUNCATE",
];

/// True if `stmt` is DDL or DML, run with `execute_update`.
pub(super) fn is_update(stmt: &str) -> bool {
    first_word(stmt).is_some_and(|w| UPDATE_KEYWORDS.contains(&w.as_str()))
}

/// A shell command: a line starting with `\`, or `quit` / `exit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Meta {
    Quit,
    Help,
    /// `\timing` toggles; `\timing on|off` sets.
    Timing(Option<bool>),
    /// `\format` shows the format; `\format table|csv|json` sets it.
    Format(Option<OutputFormat>),
    /// `\d`: list tables.
    Tables,
    /// `\d NAME`: one table's columns.
    Describe(String),
    /// Anything else, with the reason.
    Invalid(String),
}

/// Parses a shell command; `None` means the line is SQL.
pub(super) fn meta(line: &str) -> Option<Meta> {
    let line = line.trim();
    let bare = line.trim_end_matches(';').trim();
    if bare.eq_ignore_ascii_case("quit") || bare.eq_ignore_ascii_case("exit") {
        return Some(Meta::Quit);
    }
    let cmd = line.strip_prefix('\\')?;
    let cmd = cmd.trim_end_matches(';');
    let mut parts = cmd.split_whitespace();
    let name = parts.next().unwrap_or("");
    let arg = parts.next();
    let extra = parts.next();
    if extra.is_some() {
        return Some(Meta::Invalid(format!("too many arguments to \\{name}")));
    }
    Some(match (name, arg) {
        ("q" | "quit", None) => Meta::Quit,
        ("?" | "h" | "help", None) => Meta::Help,
        ("timing", None) => Meta::Timing(None),
        ("timing", Some(v)) => match v.to_ascii_lowercase().as_str() {
            "on" | "true" => Meta::Timing(Some(true)),
            "off" | "false" => Meta::Timing(Some(false)),
            _ => Meta::Invalid(format!("\\timing takes on or off, not {v:?}")),
        },
        ("format", None) => Meta::Format(None),
        ("format", Some(v)) => match v.to_ascii_lowercase().as_str() {
            "table" => Meta::Format(Some(OutputFormat::Table)),
            "csv" => Meta::Format(Some(OutputFormat::Csv)),
            "json" => Meta::Format(Some(OutputFormat::Json)),
            _ => Meta::Invalid(format!("unknown format {v:?}: use table, csv or json")),
        },
        ("d" | "dt", None) => Meta::Tables,
        ("d", Some(table)) => Meta::Describe(table.trim_matches('"').to_string()),
        _ => Meta::Invalid(format!("unknown command \\{cmd}; \\? lists the commands")),
    })
}

/// What `\?` prints.
pub(super) const HELP: &str = "\
SQL statements end with `;` and may span lines.
  \\d               list tables
  \\d TABLE         show a table's columns
  \\format [table|csv|json]
                   show or set the output format
  \\timing [on|off] toggle or set timing (on by default)
  \\q, quit, exit   leave (Ctrl-D too); Ctrl-C clears the input or cancels a query";

#[cfg(test)]
mod tests {
    use super::*;

    fn all(sql: &str) -> Vec<String> {
        split(sql).all()
    }

    #[test]
    fn splits_on_semicolons_outside_quotes_and_comments() {
        assert_eq!(all("select 1; select 2"), vec!["select 1", "select 2"]);
        assert_eq!(all("select 1;select 2;"), vec!["select 1", "select 2"]);
        assert_eq!(
            all("select ';' as a; select 2"),
            vec!["select ';' as a", "select 2"]
        );
        assert_eq!(
            all("select 'it''s; fine'; x"),
            vec!["select 'it''s; fine'", "x"]
        );
        assert_eq!(
            all(r#"select "a;b" from t;"#),
            vec![r#"select "a;b" from t"#]
        );
        assert_eq!(
            all("select 1 -- no; split\n; select 2"),
            vec!["select 1 -- no; split", "select 2"]
        );
        assert_eq!(all("select /* ; */ 1;"), vec!["select /* ; */ 1"]);
        assert_eq!(all(" ; ;; "), Vec::<String>::new());
        assert_eq!(all("-- only a comment;\n"), Vec::<String>::new());
        assert_eq!(all("select 1; -- trailing comment"), vec!["select 1"]);
    }

    #[test]
    fn keeps_the_unterminated_tail() {
        let s = split("select 1;\nselect 'a;");
        assert_eq!(s.complete, vec!["select 1"]);
        assert_eq!(s.rest, "\nselect 'a;");
        assert!(s.open);
        let s = split("select 'a;\nb';");
        assert_eq!(s.complete, vec!["select 'a;\nb'"]);
        assert_eq!(s.rest, "");
        let s = split("select 1 /* open ; comment");
        assert!(s.complete.is_empty() && s.open && has_code(&s.rest));
        let s = split("/* open");
        assert!(!has_code(&s.rest) && s.open);
        assert!(!split("select 1 -- line comment").open);
        assert!(!has_code("  -- x\n /* y */ "));
    }

    #[test]
    fn classifies_updates() {
        assert!(is_update("CREATE TABLE t (a int)"));
        assert!(is_update("  delete from t where a = 1"));
        assert!(is_update("-- why\ninsert into t values (1)"));
        assert!(is_update("/* c */ DROP TABLE t"));
        assert!(!is_update("select * from t"));
        assert!(!is_update("-- delete\nselect 1"));
        assert!(!is_update("WITH x AS (select 1) select * from x"));
        assert!(!is_update("created_at"));
        assert!(!is_update(""));
    }

    #[test]
    fn parses_shell_commands() {
        assert_eq!(meta("\\q"), Some(Meta::Quit));
        assert_eq!(meta("quit"), Some(Meta::Quit));
        assert_eq!(meta(" EXIT; "), Some(Meta::Quit));
        assert_eq!(meta("\\timing"), Some(Meta::Timing(None)));
        assert_eq!(meta("\\timing off"), Some(Meta::Timing(Some(false))));
        assert_eq!(
            meta("\\format csv"),
            Some(Meta::Format(Some(OutputFormat::Csv)))
        );
        assert_eq!(meta("\\format"), Some(Meta::Format(None)));
        assert!(matches!(meta("\\format xml"), Some(Meta::Invalid(_))));
        assert_eq!(meta("\\d"), Some(Meta::Tables));
        assert_eq!(meta("\\d logs"), Some(Meta::Describe("logs".into())));
        assert_eq!(meta("\\d \"Logs\";"), Some(Meta::Describe("Logs".into())));
        assert!(matches!(meta("\\x"), Some(Meta::Invalid(_))));
        assert_eq!(meta("select 1;"), None);
        assert_eq!(meta("quitting"), None);
    }
}
